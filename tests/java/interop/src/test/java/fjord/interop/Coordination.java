package fjord.interop;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;

/**
 * A coordination service on loopback, for tests that run the same scenario against
 * fjord-coordinator and, as the reference, Debian's Apache ZooKeeper 3.8 (standalone).
 */
abstract class Coordination implements AutoCloseable {
  /** "fjord" or "zookeeper". */
  abstract String kind();

  /** HOST:PORT for clients. */
  abstract String connectString();

  /** kill -9, then start again on the same address and data. */
  abstract void restart() throws Exception;

  static Coordination start(String kind, Path dir) throws Exception {
    return switch (kind) {
      case "fjord" -> new OnFjord(dir);
      case "zookeeper" -> new OnZooKeeper(dir);
      default -> throw new IllegalArgumentException(kind);
    };
  }

  static final class OnFjord extends Coordination {
    final Fjord.Coordinator coordinator;

    OnFjord(Path dir) throws Exception {
      coordinator = new Fjord.Coordinator(dir);
    }

    @Override
    String kind() {
      return "fjord";
    }

    @Override
    String connectString() {
      return coordinator.address;
    }

    @Override
    void restart() throws Exception {
      coordinator.restart();
    }

    @Override
    public void close() throws Exception {
      coordinator.close();
    }
  }

  /** Apache ZooKeeper 3.8 from Debian's `zookeeper` package, 200 ms ticks as ours. */
  static final class OnZooKeeper extends Coordination {
    static final String CLASSPATH =
        System.getenv().getOrDefault(
            "FJORD_ZK_CLASSPATH", "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar");
    final Proc proc;
    final int port;

    OnZooKeeper(Path dir) throws Exception {
      Files.createDirectories(dir);
      port = freePort();
      Path config = dir.resolve("zoo.cfg");
      Files.writeString(
          config,
          String.join(
              "\n",
              "tickTime=200",
              "dataDir=" + dir.resolve("data"),
              "clientPort=" + port,
              "clientPortAddress=127.0.0.1",
              "admin.enableServer=false",
              "4lw.commands.whitelist=*",
              ""));
      proc =
          new Proc(
              "zookeeper",
              Proc.cmd(
                  KafkaTool.javaBin(), "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                  "-cp", CLASSPATH, "org.apache.zookeeper.server.quorum.QuorumPeerMain", config),
              dir);
      proc.start();
      awaitServing();
    }

    private void awaitServing() throws InterruptedException {
      Instant deadline = Instant.now().plus(Duration.ofSeconds(30));
      while (Instant.now().isBefore(deadline)) {
        if (fourLetter("127.0.0.1", port, "srvr").startsWith("Zookeeper version:")) {
          return;
        }
        if (!proc.running()) {
          throw new IllegalStateException("zookeeper exited:\n" + proc.tail());
        }
        Thread.sleep(100);
      }
      throw new IllegalStateException("zookeeper not serving:\n" + proc.tail());
    }

    @Override
    String kind() {
      return "zookeeper";
    }

    @Override
    String connectString() {
      return "127.0.0.1:" + port;
    }

    @Override
    void restart() throws Exception {
      proc.kill();
      proc.start();
      awaitServing();
    }

    @Override
    public void close() throws Exception {
      proc.kill();
    }
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  /** A four-letter command's answer, or "" if the server does not answer. */
  static String fourLetter(String host, int port, String command) {
    try (Socket s = new Socket()) {
      s.connect(new InetSocketAddress(host, port), 1000);
      s.setSoTimeout(2000);
      OutputStream out = s.getOutputStream();
      out.write(command.getBytes(StandardCharsets.US_ASCII));
      out.flush();
      InputStream in = s.getInputStream();
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    } catch (IOException e) {
      return "";
    }
  }
}
