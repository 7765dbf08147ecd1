package io.bmtrain4j.natives;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.List;
import org.bytedeco.javacpp.Loader;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Loads libtorch's natives once per JVM, safely when several processes start on one machine at
 * the same moment, and repairs a native cache that an earlier crash left damaged.
 *
 * <p>[Note: native cache] JavaCPP unpacks the natives of its jars into a cache directory
 * ({@code ~/.javacpp/cache}, or {@code -Dorg.bytedeco.javacpp.cachedir}) on first use. It locks
 * the files it extracts itself, but libtorch's dependencies ({@code libtorch_cpu.so}, 330 MB)
 * reach the disk without any check that a later process repeats: a second process that starts
 * while the first is still writing maps a half-written library and dies of SIGBUS in
 * {@code ld.so}, and a process killed mid-write leaves a truncated file that every later JVM
 * trusts and crashes on (JavaCPP issue #608; seen on a fresh machine on 2026-12-01). So before
 * any libtorch class initialises, every entry point calls {@link #load()}, which
 * <ol>
 *   <li>takes an exclusive file lock ({@value #LOCK_FILE} in the cache directory), so only one
 *       process on the machine unpacks or checks at a time and the others wait for it;</li>
 *   <li>compares every cached native file with its jar entry (size and timestamp, which JavaCPP
 *       sets only once a file is complete) and re-extracts each one that differs, through a
 *       temporary file and an atomic rename ({@link NativeCache});</li>
 *   <li>loads libtorch while still holding the lock if anything is still to be unpacked, so
 *       JavaCPP's own extraction is done before the next process looks; a whole cache is
 *       released first, and the ranks load together.</li>
 * </ol>
 * Where the lock cannot be taken at all (a read-only cache, a file system without locks), it
 * loads as JavaCPP alone would, after checking that no cached file is damaged.
 * torchrun, Slurm and user launchers start every rank at once, which is why this sits in
 * {@code Bmt.initDistributed} and the mains, not only in the local launcher.
 */
public final class NativeLibraries {
  private static final Logger LOG = LoggerFactory.getLogger(NativeLibraries.class);

  /** The lock file in the native cache directory; not JavaCPP's own {@code .lock}, which it takes per file. */
  public static final String LOCK_FILE = ".bmtrain4j-load.lock";

  /** How long to wait for another process that holds the lock before failing with its pid. */
  static final Duration LOCK_WAIT = Duration.ofMinutes(10);

  /** After this long waiting, say once why nothing is happening. */
  private static final Duration WAIT_NOTICE = Duration.ofSeconds(3);

  private static volatile boolean loaded;

  private NativeLibraries() {}

  /**
   * Makes sure libtorch is loaded in this JVM; the first call checks and, where needed, repairs
   * the native cache under a cross-process lock (see [Note: native cache]). Cheap after the first call.
   *
   * @throws NativeLibraryException if the natives cannot be unpacked or loaded; the message names
   *     the file and the fix
   */
  public static void load() {
    if (loaded) {
      return;
    }
    synchronized (NativeLibraries.class) {
      if (loaded) {
        return;
      }
      Path cacheDir = cacheDirectory();
      FileChannel channel = null;
      FileLock lock = null;
      try {
        try {
          channel = FileChannel.open(cacheDir.resolve(LOCK_FILE),
              StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
          lock = acquire(channel, cacheDir);
          writeOwner(channel);
        } catch (IOException | UnsupportedOperationException e) {
          // A read-only cache (a container image) or a file system without locks: load as JavaCPP alone would.
          LOG.warn("cannot lock the native cache {} ({}); loading without the lock", cacheDir, e.toString());
        }
        NativeCache cache = new NativeCache(cacheDir);
        List<java.net.URL> dirs = NativeCache.nativeDirectories();
        if (lock != null) {
          for (NativeCache.Repair r : cache.repair(dirs)) {
            LOG.warn("re-extracted a damaged native library: {} ({})", r.file(), r.reason());
          }
          if (cache.wasLoadedFrom(dirs)) {
            // Unpacked whole before, and checked just now: the ranks may load at the same time.
            lock.release();
            lock = null;
          }
        } else {
          cache.requireUndamaged(dirs);
        }
        loadLibtorch(cacheDir);
        if (lock != null) {
          cache.markLoaded(dirs);
        }
        loaded = true;
      } catch (IOException e) {
        throw new NativeLibraryException("cannot use the native library cache " + cacheDir + ": " + e.getMessage()
            + ". Make it writable, or point -Dorg.bytedeco.javacpp.cachedir=DIR at a writable directory.", e);
      } finally {
        release(lock, channel);
      }
    }
  }

  private static void release(FileLock lock, FileChannel channel) {
    try {
      if (lock != null) {
        lock.release();
      }
      if (channel != null) {
        channel.close();
      }
    } catch (IOException e) {
      LOG.debug("closing the native cache lock: {}", e.toString());
    }
  }

  /** JavaCPP's cache directory (created if missing): where this JVM's natives are unpacked. */
  public static Path cacheDirectory() {
    try {
      Path dir = Loader.getCacheDir().toPath();
      Files.createDirectories(dir);
      return dir;
    } catch (IOException e) {
      throw new NativeLibraryException("cannot create the native library cache directory: " + e.getMessage()
          + ". Point -Dorg.bytedeco.javacpp.cachedir=DIR at a writable directory.", e);
    }
  }

  private static void loadLibtorch(Path cacheDir) {
    try {
      Loader.load(org.bytedeco.pytorch.global.torch.class);
    } catch (UnsatisfiedLinkError | RuntimeException e) {
      throw new NativeLibraryException("cannot load libtorch from the native cache " + cacheDir + ": " + e
          + ". If the disk is full, free space; otherwise delete " + cacheDir + " and run again.", e);
    }
    // GPU builds (-Dorg.bytedeco.javacpp.platform.extension=-gpu): NCCL's JNI is loaded lazily by
    // the first collective; unpack it now, under the lock, too.
    if (System.getProperty("org.bytedeco.javacpp.platform.extension", "").contains("gpu")) {
      try {
        Loader.load(Class.forName("org.bytedeco.cuda.global.nccl"));
      } catch (ClassNotFoundException | LinkageError e) {
        LOG.debug("NCCL's natives not loaded at start: {}", e.toString());
      }
    }
  }

  /** Waits for the lock, saying once who holds it when that takes a while. */
  private static FileLock acquire(FileChannel channel, Path cacheDir) throws IOException {
    long start = System.nanoTime();
    boolean told = false;
    while (true) {
      FileLock lock = channel.tryLock();
      if (lock != null) {
        return lock;
      }
      Duration waited = Duration.ofNanos(System.nanoTime() - start);
      if (!told && waited.compareTo(WAIT_NOTICE) > 0) {
        LOG.info("waiting for process {} to finish unpacking libtorch into {}", owner(channel), cacheDir);
        told = true;
      }
      if (waited.compareTo(LOCK_WAIT) > 0) {
        throw new NativeLibraryException("process " + owner(channel) + " has held " + cacheDir.resolve(LOCK_FILE)
            + " for over " + LOCK_WAIT.toMinutes() + " minutes while unpacking libtorch; if that process is stopped"
            + " or hung, end it and run again.");
      }
      try {
        Thread.sleep(50);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new NativeLibraryException("interrupted while waiting for the native cache lock in " + cacheDir, e);
      }
    }
  }

  private static void writeOwner(FileChannel channel) {
    try {
      channel.truncate(0);
      channel.write(ByteBuffer.wrap(Long.toString(ProcessHandle.current().pid()).getBytes(StandardCharsets.US_ASCII)), 0);
    } catch (IOException e) {
      // Only used to name the holder in a message.
    }
  }

  private static String owner(FileChannel channel) {
    try {
      ByteBuffer b = ByteBuffer.allocate(32);
      int n = channel.read(b, 0);
      return n > 0 ? new String(b.array(), 0, n, StandardCharsets.US_ASCII).trim() : "(unknown)";
    } catch (IOException e) {
      return "(unknown)";
    }
  }
}
