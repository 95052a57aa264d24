package fjord.interop;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Where our binaries are, and how to start them on port 0 in a temp dir of their own. */
final class Fjord {
  private Fjord() {}

  static final Duration STARTUP = Duration.ofSeconds(30);

  /** FJORD_BIN_DIR (or -Dfjord.bin.dir), else the workspace's debug build. */
  static Path binDir() {
    String dir = System.getProperty("fjord.bin.dir");
    if (dir == null || dir.isBlank() || dir.startsWith("${")) {
      dir = System.getenv("FJORD_BIN_DIR");
    }
    if (dir == null || dir.isBlank()) {
      Path here = Paths.get("").toAbsolutePath();
      for (Path p = here; p != null; p = p.getParent()) {
        if (Files.isDirectory(p.resolve("target/debug")) && Files.isRegularFile(p.resolve("Cargo.toml"))) {
          return p.resolve("target/debug");
        }
      }
      throw new IllegalStateException("set FJORD_BIN_DIR to the directory of fjord-broker");
    }
    return Paths.get(dir);
  }

  static String binary(String name) {
    Path p = binDir().resolve(name);
    if (!Files.isExecutable(p)) {
      throw new IllegalStateException(p + " not found: build it, or set FJORD_BIN_DIR");
    }
    return p.toString();
  }

  /** A standalone fjord-coordinator on a free loopback port. */
  static final class Coordinator implements AutoCloseable {
    final Proc proc;
    String address;

    Coordinator(Path dir) throws IOException, InterruptedException {
      Files.createDirectories(dir);
      proc =
          new Proc(
              "coordinator",
              Proc.cmd(
                  binary("fjord-coordinator"),
                  "--listen", "127.0.0.1:0",
                  "--data-dir", dir.resolve("data"),
                  "--tick-ms", 200),
              dir);
      proc.start();
      address = proc.awaitListening(STARTUP);
    }

    /** Stops it (kill -9) and starts it again on the same address and data. */
    void restart() throws IOException, InterruptedException {
      proc.kill();
      proc.command.set(proc.command.indexOf("--listen") + 1, address);
      proc.start();
      String bound = proc.awaitListening(STARTUP);
      if (!bound.equals(address)) {
        throw new IllegalStateException("coordinator came back on " + bound + ", not " + address);
      }
    }

    @Override
    public void close() throws InterruptedException {
      proc.kill();
    }
  }

  /** One fjord-broker: restartable on the same address, id and data dir. */
  static final class Broker {
    final int id;
    final Proc proc;
    String address;

    Broker(int id, String coordinator, Path dir, Map<String, String> options)
        throws IOException, InterruptedException {
      this.id = id;
      Files.createDirectories(dir);
      List<String> command =
          Proc.cmd(
              binary("fjord-broker"),
              "--id", id,
              "--listen", "127.0.0.1:0",
              "--coordinator", coordinator,
              "--data-dir", dir.resolve("data"));
      options.forEach(
          (k, v) -> {
            command.add("--" + k);
            command.add(v);
          });
      proc = new Proc("broker-" + id, command, dir);
      proc.start();
      address = proc.awaitListening(STARTUP);
      proc.command.set(proc.command.indexOf("--listen") + 1, address);
    }

    void kill() throws InterruptedException {
      proc.kill();
    }

    /** Start again after a kill: same id, address and data dir. */
    void restart() throws IOException, InterruptedException {
      proc.start();
      String bound = proc.awaitListening(STARTUP);
      if (!bound.equals(address)) {
        throw new IllegalStateException("broker " + id + " restarted on " + bound);
      }
    }
  }

  /** Broker flags the tests share: fast group starts and failure detection. */
  static Map<String, String> defaults() {
    Map<String, String> o = new LinkedHashMap<>();
    o.put("session-timeout-ms", "4000");
    o.put("group-initial-rebalance-delay-ms", "0");
    return o;
  }
}
