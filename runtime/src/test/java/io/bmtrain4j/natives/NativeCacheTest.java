package io.bmtrain4j.natives;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.OutputStream;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The cache check on a jar of our own: what counts as damaged, the repair, and the error when none is possible. */
class NativeCacheTest {
  private static final String DIR = "org/bytedeco/fake/linux-x86_64/";
  private static final long TIME = 1_700_000_000_000L;

  @TempDir Path work;
  private Path jar;
  private Path cache;
  private final byte[] whole = new byte[100_000];

  @BeforeEach
  void writeJar() throws IOException {
    for (int i = 0; i < whole.length; i++) {
      whole[i] = (byte) (i * 31);
    }
    jar = work.resolve("fake-1.0-linux-x86_64.jar");
    try (OutputStream f = Files.newOutputStream(jar); JarOutputStream out = new JarOutputStream(f)) {
      JarEntry dir = new JarEntry(DIR);
      out.putNextEntry(dir);
      out.closeEntry();
      JarEntry lib = new JarEntry(DIR + "libfake.so");
      lib.setTime(TIME);
      out.putNextEntry(lib);
      out.write(whole);
      out.closeEntry();
    }
    cache = work.resolve("cache");
  }

  private Path cached() {
    return cache.resolve(jar.getFileName().toString()).resolve(DIR + "libfake.so");
  }

  private List<URL> dirs() throws IOException {
    return List.of(new URL("jar:" + jar.toUri() + "!/" + DIR));
  }

  private Path cachedCopy(byte[] content, long time) throws IOException {
    Files.createDirectories(cached().getParent());
    Files.write(cached(), content);
    Files.setLastModifiedTime(cached(), FileTime.fromMillis(time));
    return cached();
  }

  @Test
  void aWholeCopyIsTrustedAndAMissingOneLeftToJavacpp() throws IOException {
    assertEquals(List.of(), new NativeCache(cache).repair(dirs()), "nothing cached yet: nothing to repair");
    cachedCopy(whole, TIME);
    assertEquals(List.of(), new NativeCache(cache).repair(dirs()));
  }

  @Test
  void aTruncatedCopyIsExtractedAgainWithItsTimeStamp() throws IOException {
    cachedCopy(java.util.Arrays.copyOf(whole, 1000), TIME);
    List<NativeCache.Repair> repairs = new NativeCache(cache).repair(dirs());
    assertEquals(1, repairs.size());
    assertTrue(repairs.get(0).reason().contains("1,000 bytes instead of 100,000"), repairs.get(0).reason());
    assertArrayEquals(whole, Files.readAllBytes(cached()));
    assertEquals(TIME, Files.getLastModifiedTime(cached()).toMillis());
  }

  @Test
  void aCopyWhoseTimeStampWasNeverSetIsExtractedAgain() throws IOException {
    byte[] sameSizeOtherBytes = new byte[whole.length];
    cachedCopy(sameSizeOtherBytes, TIME + 60_000);
    assertEquals(1, new NativeCache(cache).repair(dirs()).size());
    assertArrayEquals(whole, Files.readAllBytes(cached()));
  }

  @Test
  void aDamagedFileThatCannotBeReplacedFailsNamingTheFileAndTheFix() throws IOException {
    // A non-empty directory where the library should be: no rename can replace it.
    Files.createDirectories(cached().resolve("in-the-way"));
    NativeLibraryException e = assertThrows(NativeLibraryException.class, () -> new NativeCache(cache).repair(dirs()));
    assertTrue(e.getMessage().contains(cached().toString()), e.getMessage());
    assertTrue(e.getMessage().contains("-Dorg.bytedeco.javacpp.cachedir"), e.getMessage());
    try (var listing = Files.list(cached().getParent())) {
      assertEquals(List.of(cached()), listing.toList(), "no temporary file left behind");
    }
  }

  @Test
  void aLoadIsRememberedForTheSameJarsOnly() throws IOException {
    NativeCache cache = new NativeCache(createdCache());
    assertTrue(!cache.wasLoadedFrom(dirs()), "nothing loaded yet");
    cache.markLoaded(dirs());
    assertTrue(cache.wasLoadedFrom(dirs()));
    Files.write(jar, new byte[] {1, 2, 3}, java.nio.file.StandardOpenOption.APPEND); // another build of the jar
    assertTrue(!cache.wasLoadedFrom(dirs()), "a changed jar needs a load under the lock again");
  }

  private Path createdCache() throws IOException {
    return Files.createDirectories(cache);
  }
}
