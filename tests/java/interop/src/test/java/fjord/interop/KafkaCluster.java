package fjord.interop;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;

/**
 * A fjord-coordinator and N fjord-broker processes, each on a free loopback port in a
 * temp dir of its own. Test classes start one in {@code @BeforeAll} and share it.
 */
final class KafkaCluster implements AutoCloseable {
  final Path dir;
  final Fjord.Coordinator coordinator;
  final List<Fjord.Broker> brokers = new ArrayList<>();
  private final Admin admin;

  KafkaCluster(int brokerCount, Map<String, String> options) throws Exception {
    dir = Files.createTempDirectory("fjord-java-");
    coordinator = new Fjord.Coordinator(dir.resolve("coordinator"));
    Map<String, String> merged = Fjord.defaults();
    merged.putAll(options);
    for (int id = 1; id <= brokerCount; id++) {
      brokers.add(new Fjord.Broker(id, coordinator.address, dir.resolve("broker-" + id), merged));
    }
    admin = Admin.create(adminProps());
    awaitBrokers(brokerCount);
  }

  KafkaCluster(int brokerCount) throws Exception {
    this(brokerCount, Map.of());
  }

  String bootstrap() {
    return brokers.stream()
        .filter(b -> b.proc.running())
        .map(b -> b.address)
        .collect(Collectors.joining(","));
  }

  Properties adminProps() {
    Properties p = new Properties();
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    return p;
  }

  Admin admin() {
    return admin;
  }

  Fjord.Broker broker(int id) {
    return brokers.get(id - 1);
  }

  /** Waits until the cluster reports {@code count} brokers and a controller. */
  void awaitBrokers(int count) throws Exception {
    await(
        Duration.ofSeconds(30),
        "brokers " + count,
        () -> {
          try {
            DescribeClusterResult r = admin.describeCluster();
            Collection<Node> nodes = r.nodes().get(5, TimeUnit.SECONDS);
            Node controller = r.controller().get(5, TimeUnit.SECONDS);
            return nodes.size() == count && controller != null && !controller.isEmpty();
          } catch (Exception e) {
            return false;
          }
        });
  }

  /** Creates a topic and waits until every partition has a leader. */
  void createTopic(String name, int partitions, short replication, Map<String, String> configs)
      throws Exception {
    admin
        .createTopics(List.of(new NewTopic(name, partitions, replication).configs(configs)))
        .all()
        .get(30, TimeUnit.SECONDS);
    awaitLeaders(name, partitions);
  }

  void createTopic(String name, int partitions, short replication) throws Exception {
    createTopic(name, partitions, replication, Map.of());
  }

  void awaitLeaders(String topic, int partitions) throws Exception {
    await(
        Duration.ofSeconds(30),
        "leaders of " + topic,
        () -> {
          try {
            TopicDescription d =
                admin.describeTopics(Set.of(topic)).allTopicNames().get(5, TimeUnit.SECONDS).get(topic);
            return d.partitions().size() == partitions
                && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty());
          } catch (Exception e) {
            return false;
          }
        });
  }

  /** Waits until every replica of the topic is in sync. */
  void awaitInSync(String topic) throws Exception {
    await(
        Duration.ofSeconds(60),
        "ISR of " + topic,
        () -> {
          try {
            TopicDescription d =
                admin.describeTopics(Set.of(topic)).allTopicNames().get(5, TimeUnit.SECONDS).get(topic);
            for (TopicPartitionInfo p : d.partitions()) {
              if (p.isr().size() != p.replicas().size()) {
                return false;
              }
            }
            return true;
          } catch (Exception e) {
            return false;
          }
        });
  }

  /** Polls {@code condition} every 100 ms until it holds or {@code timeout} passes. */
  static void await(Duration timeout, String what, BooleanSupplier condition)
      throws InterruptedException {
    Instant deadline = Instant.now().plus(timeout);
    while (Instant.now().isBefore(deadline)) {
      if (condition.getAsBoolean()) {
        return;
      }
      Thread.sleep(100);
    }
    throw new AssertionError("timed out after " + timeout + " waiting for " + what);
  }

  /** The log tails of every process, for a failed test's report. */
  String tails() {
    StringBuilder sb = new StringBuilder();
    sb.append("--- coordinator ---\n").append(coordinator.proc.tail()).append('\n');
    for (Fjord.Broker b : brokers) {
      sb.append("--- broker ").append(b.id).append(" ---\n").append(b.proc.tail()).append('\n');
    }
    return sb.toString();
  }

  @Override
  public void close() throws Exception {
    admin.close(Duration.ofSeconds(5));
    for (Fjord.Broker b : brokers) {
      b.kill();
    }
    coordinator.close();
  }

  /** Removes the temp dir of a cluster that passed (a failed one stays for reading). */
  void delete() throws IOException {
    Proc.deleteTree(dir);
  }
}
