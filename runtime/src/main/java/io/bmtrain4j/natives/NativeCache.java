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
          if (entry.isDirectory() || prefix == null || !entry.getName().startsWith(prefix)) {
            continue;
          }
          Path cached = jarCache.resolve(entry.getName());
          String damage = damage(cached, entry);
          if (damage != null) {
            extract(jarFile, entry, cached, damage);
            repairs.add(new Repair(cached, damage));
          }
        }
      }
    }
    return repairs;
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
