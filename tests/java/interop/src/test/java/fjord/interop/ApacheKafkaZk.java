package fjord.interop;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.Node;

/**
 * Apache Kafka 3.9 brokers in ZooKeeper mode (from Maven Central, on the classpath the
 * kafka-3.9 module writes), each a JVM of its own, with `zookeeper.connect` pointing at a
 * {@link Coordination} under the chroot {@link #CHROOT}.
 */
final class ApacheKafkaZk implements AutoCloseable {
  static final String CHROOT = "/kafka";
  final Path dir;
  final Coordination zk;
  final List<Broker> brokers = new ArrayList<>();
  private Admin admin;

  static final class Broker {
    final int id;
    final int port;
    final Proc proc;
    /** Log length before the current run started: its "started" line comes after. */
    long logOffset;

    Broker(int id, int port, Proc proc) {
      this.id = id;
      this.port = port;
      this.proc = proc;
    }

    void start() throws java.io.IOException {
      logOffset = Files.exists(proc.log) ? Files.size(proc.log) : 0;
      proc.start();
    }

    String address() {
      return "127.0.0.1:" + port;
    }
  }

  ApacheKafkaZk(Coordination zk, Path dir, int count) throws Exception {
    this.zk = zk;
    this.dir = dir;
    Path log4j = dir.resolve("log4j.properties");
    Files.writeString(
        log4j,
        String.join(
            "\n",
            "log4j.rootLogger=INFO, stderr",
            "log4j.appender.stderr=org.apache.log4j.ConsoleAppender",
            "log4j.appender.stderr.Target=System.err",
            "log4j.appender.stderr.layout=org.apache.log4j.PatternLayout",
            "log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n",
            "log4j.logger.state.change.logger=WARN",
            "log4j.logger.kafka.log=WARN",
            ""));
    String classpath = KafkaTool.classpath("fjord.kafka39.classpath");
    for (int id = 1; id <= count; id++) {
      int port = Coordination.freePort();
      Path config = dir.resolve("server-" + id + ".properties");
      Files.writeString(
          config,
          String.join(
              "\n",
              "broker.id=" + id,
              "listeners=PLAINTEXT://127.0.0.1:" + port,
              "log.dirs=" + dir.resolve("logs-" + id),
              "zookeeper.connect=" + zk.connectString() + CHROOT,
              "zookeeper.session.timeout.ms=6000",
              "zookeeper.connection.timeout.ms=30000",
              "offsets.topic.replication.factor=3",
              "offsets.topic.num.partitions=3",
              "transaction.state.log.replication.factor=3",
              "group.initial.rebalance.delay.ms=0",
              "auto.leader.rebalance.enable=false",
              "controlled.shutdown.enable=false",
              ""));
      Proc proc =
          new Proc(
              "kafka39-" + id,
              Proc.cmd(
                  KafkaTool.javaBin(), "-Xmx320m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                  "-Dlog4j.configuration=file:" + log4j,
                  "-cp", classpath, "kafka.Kafka", config),
              dir);
      Broker b = new Broker(id, port, proc);
      b.start();
      brokers.add(b);
    }
    for (Broker b : brokers) {
      awaitStarted(b);
    }
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    admin = Admin.create(p);
    awaitBrokers(count);
  }

  String bootstrap() {
    return brokers.stream().map(Broker::address).collect(Collectors.joining(","));
  }

  Admin admin() {
    return admin;
  }

  /** Waits for the broker's "[KafkaServer id=N] started" line. */
  void awaitStarted(Broker b) throws Exception {
    long offset = b.logOffset;
    KafkaCluster.await(Duration.ofSeconds(90), "kafka broker " + b.id + " started", () -> {
      if (!b.proc.running()) {
        throw new IllegalStateException("kafka broker " + b.id + " exited:\n" + b.proc.tail());
      }
      try {
        String log = Files.readString(b.proc.log);
        return log.indexOf("[KafkaServer id=" + b.id + "] started", (int) Math.min(offset, log.length())) >= 0;
      } catch (Exception e) {
        return false;
      }
    });
  }

  void awaitBrokers(int count) throws Exception {
    KafkaCluster.await(Duration.ofSeconds(60), count + " kafka brokers", () -> {
      try {
        Collection<Node> nodes = admin.describeCluster().nodes().get(5, TimeUnit.SECONDS);
        return nodes.size() == count;
      } catch (Exception e) {
        return false;
      }
    });
  }

  int controller() throws Exception {
    return admin.describeCluster().controller().get(10, TimeUnit.SECONDS).id();
  }

  Broker broker(int id) {
    return brokers.get(id - 1);
  }

  void kill(int id) throws InterruptedException {
    broker(id).proc.kill();
  }

  void restart(int id) throws Exception {
    Broker b = broker(id);
    b.start();
    awaitStarted(b);
  }

  String tails() {
    StringBuilder sb = new StringBuilder();
    for (Broker b : brokers) {
      sb.append("--- kafka 3.9 broker ").append(b.id).append(" ---\n").append(b.proc.tail()).append('\n');
    }
    return sb.toString();
  }

  @Override
  public void close() throws Exception {
    if (admin != null) {
      admin.close(Duration.ofSeconds(5));
    }
    for (Broker b : brokers) {
      b.proc.kill();
    }
  }
}
