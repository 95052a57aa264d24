package fjord.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartitionInfo;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * Apache Kafka's own command-line tools (kafka-tools 4.4.0, each in a JVM of its own, as
 * {@code bin/kafka-*.sh} runs them) against three Fjord brokers. The expected output is
 * what the same commands print against Apache Kafka.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class ToolsTest extends ClusterTest {
  static final String TOPICS = "org.apache.kafka.tools.TopicCommand";
  static final String PRODUCER = "org.apache.kafka.tools.ConsoleProducer";
  static final String CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer";
  static final String GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
  static final String CONFIGS = "org.apache.kafka.tools.ConfigCommand";
  static final String ELECTION = "org.apache.kafka.tools.LeaderElectionCommand";
  static final String GET_OFFSETS = "org.apache.kafka.tools.GetOffsetShell";
  static final String PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance";
  static final String CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance";
  static final String API_VERSIONS = "org.apache.kafka.tools.BrokerApiVersionsCommand";
  static final String REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";

  private KafkaTool.Result tool(String main, String stdin, String... args) throws Exception {
    String[] all = new String[args.length + 2];
    all[0] = "--bootstrap-server";
    all[1] = cluster.bootstrap();
    System.arraycopy(args, 0, all, 2, args.length);
    return KafkaTool.run(main, stdin, 120, all);
  }

  /** Runs a tool that must succeed and returns its stdout. */
  private String ok(String main, String... args) throws Exception {
    KafkaTool.Result r = tool(main, null, args);
    assertEquals(0, r.exit(), r.toString());
    return r.stdout();
  }

  /** kafka-topics --create, then waits for the partitions' leaders. */
  private void createTopic(String topic, int partitions, int replication) throws Exception {
    ok(TOPICS, "--create", "--topic", topic, "--partitions", Integer.toString(partitions),
        "--replication-factor", Integer.toString(replication));
    cluster.awaitLeaders(topic, partitions);
  }

  private static List<String> lines(String out) {
    return Arrays.stream(out.split("\n")).map(String::strip).filter(l -> !l.isEmpty()).toList();
  }

  @Test
  @Order(1)
  void topicsCreateDescribeAlterDelete() throws Exception {
    assertEquals(
        "Created topic tools-topic.",
        ok(TOPICS, "--create", "--topic", "tools-topic", "--partitions", "3",
            "--replication-factor", "3", "--config", "retention.ms=1000000").strip());
    cluster.awaitLeaders("tools-topic", 3);
    assertTrue(lines(ok(TOPICS, "--list")).contains("tools-topic"));
    String described = ok(TOPICS, "--describe", "--topic", "tools-topic");
    List<String> d = lines(described);
    assertTrue(
        d.get(0).matches("Topic: tools-topic\\tTopicId: \\S{22}\\tPartitionCount: 3\\tReplicationFactor: 3\\tConfigs: retention.ms=1000000"),
        described);
    for (int p = 0; p < 3; p++) {
      String line = d.get(p + 1);
      assertTrue(
          line.matches("Topic: tools-topic\\tPartition: " + p + "\\tLeader: [123]\\tReplicas: [123],[123],[123]\\tIsr: [123],[123],[123].*"),
          line);
    }
    // A second create of the same name fails, as against Kafka.
    KafkaTool.Result again =
        tool(TOPICS, null, "--create", "--topic", "tools-topic", "--partitions", "1", "--replication-factor", "1");
    assertNotEquals(0, again.exit());
    assertTrue(again.stdout().contains("already exists") || again.stderr().contains("already exists"), again.toString());

    ok(TOPICS, "--alter", "--topic", "tools-topic", "--partitions", "5");
    cluster.awaitLeaders("tools-topic", 5);
    assertTrue(ok(TOPICS, "--describe", "--topic", "tools-topic").contains("PartitionCount: 5"));

    // Every replica is in sync: nothing is under-replicated.
    cluster.awaitInSync("tools-topic");
    assertEquals("", ok(TOPICS, "--describe", "--under-replicated-partitions").strip());

    ok(TOPICS, "--create", "--topic", "tools-doomed", "--partitions", "1", "--replication-factor", "2");
    ok(TOPICS, "--delete", "--topic", "tools-doomed");
    KafkaCluster.await(Duration.ofSeconds(30), "deleted topic gone from --list", () -> {
      try {
        return !lines(ok(TOPICS, "--list")).contains("tools-doomed");
      } catch (Exception e) {
        return false;
      }
    });
  }

  @Test
  @Order(2)
  void consoleProducerAndConsumerWithKeysAndAGroup() throws Exception {
    createTopic("tools-console", 2, 3);
    StringBuilder input = new StringBuilder();
    for (int i = 0; i < 50; i++) {
      input.append("key").append(i % 5).append(':').append("value ").append(i).append('\n');
    }
    KafkaTool.Result produced =
        tool(PRODUCER, input.toString(), "--topic", "tools-console",
            "--reader-property", "parse.key=true", "--reader-property", "key.separator=:",
            "--producer-property", "acks=all");
    assertEquals(0, produced.exit(), produced.toString());
    String consumed =
        ok(CONSUMER, "--topic", "tools-console", "--from-beginning", "--max-messages", "50",
            "--formatter-property", "print.key=true", "--group", "tools-group", "--timeout-ms", "60000");
    List<String> got = lines(consumed);
    assertEquals(50, got.size(), consumed);
    Set<String> want =
        java.util.stream.IntStream.range(0, 50)
            .mapToObj(i -> "key" + (i % 5) + "\tvalue " + i)
            .collect(Collectors.toSet());
    assertEquals(want, Set.copyOf(got));
  }

  @Test
  @Order(3)
  void consumerGroupsDescribeResetDelete() throws Exception {
    // The group of the previous test: all 50 read and committed.
    assertTrue(lines(ok(GROUPS, "--list")).contains("tools-group"));
    String described = ok(GROUPS, "--describe", "--group", "tools-group");
    Pattern row = Pattern.compile("tools-group\\s+tools-console\\s+(\\d)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+-\\s+-\\s+-");
    long committed = 0;
    Matcher m = row.matcher(described);
    int rows = 0;
    while (m.find()) {
      rows++;
      assertEquals(m.group(2), m.group(3), "committed at the log end: " + described);
      assertEquals("0", m.group(4), "no lag: " + described);
      committed += Long.parseLong(m.group(2));
    }
    assertEquals(2, rows, described);
    assertEquals(50, committed, described);
    KafkaTool.Result inactive = tool(GROUPS, null, "--describe", "--group", "tools-group");
    assertTrue(inactive.stderr().contains("Consumer group 'tools-group' has no active members."), inactive.toString());

    String dry = ok(GROUPS, "--reset-offsets", "--group", "tools-group", "--topic", "tools-console:0", "--to-offset", "1", "--dry-run");
    assertTrue(dry.matches("(?s).*tools-group\\s+tools-console\\s+0\\s+1.*"), dry);
    String reset = ok(GROUPS, "--reset-offsets", "--group", "tools-group", "--topic", "tools-console", "--to-earliest", "--execute");
    assertTrue(reset.matches("(?s).*tools-group\\s+tools-console\\s+0\\s+0.*tools-group\\s+tools-console\\s+1\\s+0.*")
        || reset.matches("(?s).*tools-group\\s+tools-console\\s+1\\s+0.*tools-group\\s+tools-console\\s+0\\s+0.*"), reset);
    described = ok(GROUPS, "--describe", "--group", "tools-group");
    m = row.matcher(described);
    long lag = 0;
    while (m.find()) {
      assertEquals("0", m.group(2), described);
      lag += Long.parseLong(m.group(4));
    }
    assertEquals(50, lag, "all 50 to read again: " + described);

    String deleted = ok(GROUPS, "--delete-offsets", "--group", "tools-group", "--topic", "tools-console");
    assertTrue(deleted.contains("Request succeeded for deleting offsets from group tools-group."), deleted);
    assertTrue(deleted.matches("(?s).*tools-console\\s+0\\s+Successful.*"), deleted);

    String gone = ok(GROUPS, "--delete", "--group", "tools-group");
    assertTrue(gone.contains("Deletion of requested consumer groups ('tools-group') was successful."), gone);
    assertFalse(lines(ok(GROUPS, "--list")).contains("tools-group"));
    KafkaTool.Result missing = tool(GROUPS, null, "--delete", "--group", "tools-group");
    assertTrue((missing.stdout() + missing.stderr()).contains("does not exist"), missing.toString());
  }

  @Test
  @Order(4)
  void configsAlterDescribeDelete() throws Exception {
    ok(TOPICS, "--create", "--topic", "tools-configs", "--partitions", "1", "--replication-factor", "3");
    String done =
        ok(CONFIGS, "--entity-type", "topics", "--entity-name", "tools-configs", "--alter",
            "--add-config", "retention.ms=5000,cleanup.policy=[delete,compact]");
    assertEquals("Completed updating config for topic tools-configs.", done.strip());
    String described = ok(CONFIGS, "--entity-type", "topics", "--entity-name", "tools-configs", "--describe");
    assertTrue(described.contains("Dynamic configs for topic tools-configs are:"), described);
    // With the synonyms Kafka lists: the topic's own value, then the broker setting behind it.
    assertTrue(
        described.contains(
            "retention.ms=5000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=5000, DEFAULT_CONFIG:log.retention.ms=604800000}"),
        described);
    assertTrue(described.contains("cleanup.policy=delete,compact sensitive=false"), described);
    ok(CONFIGS, "--entity-type", "topics", "--entity-name", "tools-configs", "--alter", "--delete-config", "retention.ms");
    described = ok(CONFIGS, "--entity-type", "topics", "--entity-name", "tools-configs", "--describe");
    assertFalse(described.contains("retention.ms="), described);
    // An invalid value is refused with Kafka's message and a non-zero exit.
    KafkaTool.Result bad =
        tool(CONFIGS, null, "--entity-type", "topics", "--entity-name", "tools-configs", "--alter", "--add-config", "retention.ms=never");
    assertNotEquals(0, bad.exit(), bad.toString());
    // A deliberate difference (README): broker settings are flags; only the replication
    // throttle rates change at run time.
    KafkaTool.Result broker =
        tool(CONFIGS, null, "--entity-type", "brokers", "--entity-name", "1", "--alter", "--add-config", "log.cleaner.threads=2");
    assertNotEquals(0, broker.exit(), broker.toString());
    assertTrue(broker.stdout().contains("cannot be changed at run time") || broker.stderr().contains("cannot be changed at run time"), broker.toString());
    ok(CONFIGS, "--entity-type", "brokers", "--entity-name", "1", "--alter", "--add-config", "leader.replication.throttled.rate=1048576");
    ok(CONFIGS, "--entity-type", "brokers", "--entity-default", "--alter", "--add-config", "follower.replication.throttled.rate=2097152");
    String dynamic = ok(CONFIGS, "--entity-type", "brokers", "--entity-name", "1", "--describe");
    assertTrue(dynamic.contains("leader.replication.throttled.rate=1048576 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:leader.replication.throttled.rate=1048576}"), dynamic);
    String defaults = ok(CONFIGS, "--entity-type", "brokers", "--entity-default", "--describe");
    assertTrue(defaults.contains("follower.replication.throttled.rate=2097152"), defaults);
    ok(CONFIGS, "--entity-type", "brokers", "--entity-name", "1", "--alter", "--delete-config", "leader.replication.throttled.rate");
    ok(CONFIGS, "--entity-type", "brokers", "--entity-default", "--alter", "--delete-config", "follower.replication.throttled.rate");
    dynamic = ok(CONFIGS, "--entity-type", "brokers", "--entity-name", "1", "--describe");
    assertFalse(dynamic.contains("throttled.rate="), dynamic);
    // Broker configs: --describe --all lists the static ones.
    String all = ok(CONFIGS, "--entity-type", "brokers", "--entity-name", "1", "--describe", "--all");
    assertTrue(all.contains("All configs for broker 1 are:"), all);
    assertTrue(all.contains("log.retention.ms="), all);
  }

  @Test
  @Order(5)
  void getOffsetsAndBrokerApiVersions() throws Exception {
    createTopic("tools-offsets", 2, 3);
    String input = java.util.stream.IntStream.range(0, 7).mapToObj(i -> "m" + i + "\n").collect(Collectors.joining());
    // Round-robin over both partitions.
    assertEquals(0, tool(PRODUCER, input, "--topic", "tools-offsets", "--producer-property", "partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner").exit());
    List<String> latest = lines(ok(GET_OFFSETS, "--topic", "tools-offsets"));
    assertEquals(2, latest.size(), latest.toString());
    long total = 0;
    for (String l : latest) {
      String[] f = l.split(":");
      assertEquals("tools-offsets", f[0]);
      total += Long.parseLong(f[2]);
    }
    assertEquals(7, total, latest.toString());
    assertEquals(List.of("tools-offsets:0:0", "tools-offsets:1:0"), lines(ok(GET_OFFSETS, "--topic", "tools-offsets", "--time", "-2")));

    String versions = ok(API_VERSIONS);
    for (Fjord.Broker b : cluster.brokers) {
      assertTrue(versions.contains(b.address + " (id: " + b.id + " rack: null"), versions);
    }
    assertTrue(versions.contains("Produce(0): 0 to 11 [usable: 11]"), versions);
    assertTrue(versions.contains("Fetch(1): 4 to 17 [usable: 17]"), versions);
    assertTrue(versions.contains("OffsetDelete(47): 0 [usable: 0]"), versions);
  }

  private static final Pattern PRODUCER_SUMMARY =
      Pattern.compile("(\\d+) records sent, ([\\d.]+) records/sec \\(([\\d.]+) MB/sec\\), ([\\d.]+) ms avg latency, ([\\d.]+) ms max latency, (\\d+) ms 50th, (\\d+) ms 95th, (\\d+) ms 99th, (\\d+) ms 99.9th\\.");

  @Test
  @Order(6)
  void producerAndConsumerPerfTests() throws Exception {
    createTopic("tools-perf", 3, 3);
    String produced =
        ok(PRODUCER_PERF, "--topic", "tools-perf", "--num-records", "30000", "--record-size", "100",
            "--throughput", "-1", "--command-property", "acks=all",
            "--command-property", "bootstrap.servers=" + cluster.bootstrap());
    Matcher m = PRODUCER_SUMMARY.matcher(produced);
    assertTrue(m.find(), produced);
    assertEquals("30000", m.group(1));
    String consumed =
        ok(CONSUMER_PERF, "--topic", "tools-perf", "--num-records", "30000", "--timeout", "60000");
    List<String> l = lines(consumed);
    String[] header = l.get(l.size() - 2).split(",\\s*");
    String[] values = l.get(l.size() - 1).split(",\\s*");
    int nMsg = Arrays.asList(header).indexOf("data.consumed.in.nMsg");
    assertTrue(nMsg >= 0, consumed);
    assertEquals("30000", values[nMsg], consumed);
  }

  @Test
  @Order(7)
  void underReplicatedPartitionsAndPreferredLeaderElection() throws Exception {
    ok(TOPICS, "--create", "--topic", "tools-elect", "--partitions", "3", "--replication-factor", "3");
    cluster.awaitInSync("tools-elect");
    String already = ok(ELECTION, "--election-type", "preferred", "--topic", "tools-elect", "--partition", "0");
    assertTrue(already.contains("Valid replica already elected for partitions tools-elect-0"), already);

    // Broker 1 dies: its partitions lose a replica and it leads nothing.
    Fjord.Broker one = cluster.broker(1);
    one.kill();
    try {
      KafkaCluster.await(Duration.ofSeconds(60), "under-replicated partitions listed", () -> {
        try {
          return ok(TOPICS, "--describe", "--topic", "tools-elect", "--under-replicated-partitions")
              .contains("Partition: ");
        } catch (Exception e) {
          return false;
        }
      });
      List<String> under = lines(ok(TOPICS, "--describe", "--topic", "tools-elect", "--under-replicated-partitions"));
      assertEquals(3, under.size(), "every partition has a replica on broker 1: " + under);
      for (String line : under) {
        assertTrue(line.matches(".*Leader: [23]\\tReplicas: .*\\tIsr: [23],[23].*"), line);
      }
    } finally {
      one.restart();
    }
    cluster.awaitBrokers(3);
    cluster.awaitInSync("tools-elect");
    assertEquals("", ok(TOPICS, "--describe", "--topic", "tools-elect", "--under-replicated-partitions").strip());

    // The partition whose preferred leader is broker 1 is led elsewhere until an election.
    TopicDescription d =
        cluster.admin().describeTopics(Set.of("tools-elect")).allTopicNames().get(30, TimeUnit.SECONDS).get("tools-elect");
    TopicPartitionInfo preferredOne =
        d.partitions().stream().filter(p -> p.replicas().get(0).id() == 1).findFirst().orElseThrow();
    assertNotEquals(1, preferredOne.leader().id(), "broker 1 came back as a follower");
    String elected =
        ok(ELECTION, "--election-type", "preferred", "--topic", "tools-elect", "--partition", Integer.toString(preferredOne.partition()));
    assertTrue(
        elected.contains("Successfully completed leader election (PREFERRED) for partitions tools-elect-" + preferredOne.partition()),
        elected);
    KafkaCluster.await(Duration.ofSeconds(30), "broker 1 leads again", () -> {
      try {
        return cluster.admin().describeTopics(Set.of("tools-elect")).allTopicNames().get(30, TimeUnit.SECONDS)
            .get("tools-elect").partitions().get(preferredOne.partition()).leader().id() == 1;
      } catch (Exception e) {
        return false;
      }
    });
  }

  @Test
  @Order(8)
  void reassignPartitionsWithAThrottle() throws Exception {
    createTopic("tools-moves", 2, 1);
    String input = java.util.stream.IntStream.range(0, 400).mapToObj(i -> "r" + i + "\n").collect(Collectors.joining());
    assertEquals(0, tool(PRODUCER, input, "--topic", "tools-moves", "--producer-property",
        "partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner").exit());
    TopicDescription before =
        cluster.admin().describeTopics(Set.of("tools-moves")).allTopicNames().get(30, TimeUnit.SECONDS).get("tools-moves");
    // Each partition moves to the two brokers it is not on (RF 1 -> 2).
    StringBuilder plan = new StringBuilder("{\"version\":1,\"partitions\":[");
    java.util.Map<Integer, List<Integer>> target = new java.util.TreeMap<>();
    for (TopicPartitionInfo p : before.partitions()) {
      int now = p.replicas().get(0).id();
      List<Integer> to = java.util.stream.IntStream.rangeClosed(1, 3).filter(b -> b != now).boxed().toList();
      target.put(p.partition(), to);
      if (p.partition() > 0) {
        plan.append(',');
      }
      plan.append("{\"topic\":\"tools-moves\",\"partition\":").append(p.partition())
          .append(",\"replicas\":").append(to.toString().replace(" ", "")).append('}');
    }
    plan.append("]}");
    java.nio.file.Path file = java.nio.file.Files.createTempFile("plan", ".json");
    java.nio.file.Files.writeString(file, plan.toString());
    String executed = ok(REASSIGN, "--reassignment-json-file", file.toString(), "--execute", "--throttle", "50000000");
    assertTrue(executed.contains("Save this to use as the --reassignment-json-file option during rollback"), executed);
    assertTrue(executed.contains("The inter-broker throttle limit was set to 50000000 B/s"), executed);
    assertTrue(executed.contains("Successfully started partition reassignment"), executed);
    // A second --execute of the same plan while it may still run needs --additional;
    // --verify reports until it is done, then removes the throttles.
    KafkaCluster.await(Duration.ofSeconds(60), "the reassignment verified", () -> {
      try {
        String v = ok(REASSIGN, "--reassignment-json-file", file.toString(), "--verify");
        return v.contains("Reassignment of partition tools-moves-0 is completed")
            && v.contains("Reassignment of partition tools-moves-1 is completed")
            && v.contains("Clearing broker-level throttles");
      } catch (Exception e) {
        return false;
      }
    });
    TopicDescription after =
        cluster.admin().describeTopics(Set.of("tools-moves")).allTopicNames().get(30, TimeUnit.SECONDS).get("tools-moves");
    for (TopicPartitionInfo p : after.partitions()) {
      assertEquals(target.get(p.partition()), p.replicas().stream().map(n -> n.id()).toList(), p.toString());
      assertEquals(2, p.isr().size(), p.toString());
    }
    assertTrue(ok(REASSIGN, "--list").contains("No partition reassignments found."));
    String dynamic = ok(CONFIGS, "--entity-type", "brokers", "--entity-name", "1", "--describe");
    assertFalse(dynamic.contains("throttled.rate="), "--verify removed the throttle: " + dynamic);
    String topicConfigs = ok(CONFIGS, "--entity-type", "topics", "--entity-name", "tools-moves", "--describe");
    assertFalse(topicConfigs.contains("throttled.replicas="), topicConfigs);
    // Every record is still there, once.
    String consumed = ok(CONSUMER, "--topic", "tools-moves", "--from-beginning", "--timeout-ms", "10000");
    assertEquals(400, lines(consumed).stream().filter(l -> l.startsWith("r")).distinct().count(), consumed);
    // Bad input: a broker that does not exist.
    java.nio.file.Files.writeString(file,
        "{\"version\":1,\"partitions\":[{\"topic\":\"tools-moves\",\"partition\":0,\"replicas\":[1,9]}]}");
    KafkaTool.Result bad = tool(REASSIGN, null, "--reassignment-json-file", file.toString(), "--execute");
    assertNotEquals(0, bad.exit(), bad.toString());
  }
}
