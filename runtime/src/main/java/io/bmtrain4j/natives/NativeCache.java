package io.bmtrain4j.natives;

import java.io.IOException;
import java.io.InputStream;
import java.net.JarURLConnection;
import java.net.URL;
import java.net.URLConnection;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import org.bytedeco.javacpp.Loader;

/**
 * JavaCPP's native cache as files on disk: where each native jar entry is unpacked, and whether
 * what is there is whole. Callers hold {@link NativeLibraries}' lock (see [Note: native cache]).
 *
 * <p>JavaCPP puts entry {@code E} of jar {@code J} at {@code CACHE/<file name of J>/E} and sets its
 * modification time to the entry's once the file is complete. A file whose size or time differs
 * was cut short (or replaced) and is extracted again.
 */
final class NativeCache {
  /** The Bytedeco presets whose natives the runtime loads, in load order. */
  static final List<String> PRESETS = List.of("javacpp", "openblas", "pytorch", "cuda");

  private final Path cacheDir;

  NativeCache(Path cacheDir) {
    this.cacheDir = cacheDir;
  }

  /** A cached file that did not match its jar entry and was extracted again. */
  record Repair(Path file, String reason) {}

  /**
   * The jar directories that hold this platform's natives for {@link #PRESETS}, as
   * {@code jar:file:...!/org/bytedeco/NAME/PLATFORM[EXT]/} URLs found on the class path.
   */
  static List<URL> nativeDirectories() throws IOException {
    String platform = Loader.getPlatform();
    String extension = System.getProperty("org.bytedeco.javacpp.platform.extension", "");
    Set<URL> dirs = new LinkedHashSet<>();
    ClassLoader[] loaders = {NativeCache.class.getClassLoader(), Thread.currentThread().getContextClassLoader()};
    for (String preset : PRESETS) {
      for (String suffix : extension.isEmpty() ? List.of("") : List.of(extension, "")) {
        String dir = "org/bytedeco/" + preset + "/" + platform + suffix + "/";
        for (ClassLoader loader : loaders) {
          if (loader == null) {
            continue;
          }
          Enumeration<URL> found = loader.getResources(dir);
          while (found.hasMoreElements()) {
            URL u = found.nextElement();
            if ("jar".equals(u.getProtocol())) {
              dirs.add(u);
            }
          }
        }
      }
    }
    return new ArrayList<>(dirs);
  }

  /**
   * Compares every cached file under {@code jarDirectories} with its jar entry and extracts each
   * one that differs again. Files not yet in the cache are left for JavaCPP to extract.
   *
   * @throws NativeLibraryException if a damaged file cannot be replaced; it names the file and the fix
   */
  List<Repair> repair(List<URL> jarDirectories) throws IOException {
    List<Repair> repairs = new ArrayList<>();
    forEachEntry(jarDirectories, (jarFile, entry, cached) -> {
      String damage = damage(cached, entry);
      if (damage != null) {
        extract(jarFile, entry, cached, damage);
        repairs.add(new Repair(cached, damage));
      }
    });
    return repairs;
  }

  /** The file that says a load from these jars finished once: see {@link #markLoaded}. */
  static final String LOADED_MARKER = ".bmtrain4j-loaded";

  /**
   * Whether a process has loaded libtorch from exactly these jars into this cache before. A jar
   * holds files JavaCPP never unpacks (headers, say), so "every entry is cached" cannot tell.
   */
  boolean wasLoadedFrom(List<URL> jarDirectories) throws IOException {
    Path marker = cacheDir.resolve(LOADED_MARKER);
    return Files.isRegularFile(marker) && Files.readString(marker).equals(fingerprint(jarDirectories));
  }

  /** Records that the load from these jars finished (under the lock). */
  void markLoaded(List<URL> jarDirectories) throws IOException {
    Path tmp = cacheDir.resolve(LOADED_MARKER + ".tmp-" + ProcessHandle.current().pid());
    Files.writeString(tmp, fingerprint(jarDirectories));
    Files.move(tmp, cacheDir.resolve(LOADED_MARKER), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
  }

  /** The jars' names and sizes, and the platform extension: what decides which files a load unpacks. */
  private static String fingerprint(List<URL> jarDirectories) {
    StringBuilder b = new StringBuilder(System.getProperty("org.bytedeco.javacpp.platform.extension", "")).append('\n');
    for (URL u : jarDirectories) {
      String jar = u.getPath().substring(0, Math.max(0, u.getPath().indexOf("!/")));
      long size;
      try {
        size = Files.size(Path.of(java.net.URI.create(jar)));
      } catch (IOException | IllegalArgumentException e) {
        size = -1;
      }
      b.append(u).append(' ').append(size).append('\n');
    }
    return b.toString();
  }

  /** Fails, naming the file and the fix, if a cached file is damaged (for a cache that cannot be repaired). */
  void requireUndamaged(List<URL> jarDirectories) throws IOException {
    forEachEntry(jarDirectories, (jarFile, entry, cached) -> {
      String damage = damage(cached, entry);
      if (damage != null) {
        throw new NativeLibraryException("the native library cache holds a damaged " + cached + " (" + damage
            + "), and it cannot be locked for repair. Delete " + cached.getParent()
            + " or point -Dorg.bytedeco.javacpp.cachedir=DIR at a writable directory, and run again.");
      }
    });
  }

  private interface EntryVisitor {
    void visit(JarFile jarFile, JarEntry entry, Path cached) throws IOException;
  }

  /** Every file entry under {@code jarDirectories}, with where JavaCPP caches it. */
  private void forEachEntry(List<URL> jarDirectories, EntryVisitor visitor) throws IOException {
    for (URL dir : jarDirectories) {
      URLConnection connection = dir.openConnection();
      if (!(connection instanceof JarURLConnection)) {
        continue;
      }
      JarURLConnection jar = (JarURLConnection) connection;
      jar.setUseCaches(false);
      String prefix = jar.getEntryName();
      try (JarFile jarFile = jar.getJarFile()) {
        Path jarCache = cacheDir.resolve(Path.of(jarFile.getName()).getFileName().toString());
        Enumeration<JarEntry> entries = jarFile.entries();
        while (entries.hasMoreElements()) {
          JarEntry entry = entries.nextElement();
          if (!entry.isDirectory() && prefix != null && entry.getName().startsWith(prefix)) {
            visitor.visit(jarFile, entry, jarCache.resolve(entry.getName()));
          }
        }
      }
    }
  }

  /** Why {@code cached} cannot be trusted as {@code entry}'s copy, or null if it can (or is absent). */
  static String damage(Path cached, JarEntry entry) throws IOException {
    if (!Files.exists(cached, LinkOption.NOFOLLOW_LINKS) || Files.isSymbolicLink(cached)) {
      return null; // not unpacked yet, or a link JavaCPP made to a file checked on its own
    }
    long size = Files.size(cached);
    if (entry.getSize() >= 0 && size != entry.getSize()) {
      return String.format("%,d bytes instead of %,d", size, entry.getSize());
    }
    long time = Files.getLastModifiedTime(cached).toMillis();
    if (entry.getTime() >= 0 && time != entry.getTime()) {
      return "unpacking did not finish (its time stamp was never set)";
    }
    return null;
  }

  /** Writes {@code entry} next to {@code target}, then renames it over {@code target} in one step. */
  private static void extract(JarFile jarFile, JarEntry entry, Path target, String damage) {
    Path tmp = target.resolveSibling(target.getFileName() + ".tmp-" + ProcessHandle.current().pid());
    try {
      try (InputStream in = jarFile.getInputStream(entry)) {
        Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
      }
      Files.setLastModifiedTime(tmp, FileTime.fromMillis(entry.getTime()));
      Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } catch (IOException e) {
      try {
        Files.deleteIfExists(tmp);
      } catch (IOException ignored) {
        // The message below already says what to do.
      }
      throw new NativeLibraryException("the native library cache holds a damaged " + target + " (" + damage
          + ") and it could not be extracted again from " + jarFile.getName() + ": " + e
          + ". Free disk space or make the directory writable, or delete " + target.getParent()
          + " (or point -Dorg.bytedeco.javacpp.cachedir=DIR elsewhere), and run again.", e);
    }
  }
}
