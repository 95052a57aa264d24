package fjord.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Kafka's Java consumer with the classic group protocol. */
class ConsumerTest extends ClusterTest {
  static final String TOPIC = "consumed";
  static final int PARTITIONS = 6;
  static final int PER_PARTITION = 50;
  /** Timestamps of the records: partition p, record i has BASE + i * 1000. */
  static final long BASE = 1_700_000_000_000L;

  @BeforeAll
  void fill() throws Exception {
    cluster.createTopic(TOPIC, PARTITIONS, (short) 3);
    cluster.createTopic(TOPIC + "-b", PARTITIONS, (short) 1);
    try (Producer<String, String> p = Clients.producer(cluster)) {
      for (int part = 0; part < PARTITIONS; part++) {
        for (int i = 0; i < PER_PARTITION; i++) {
          p.send(new ProducerRecord<>(TOPIC, part, BASE + i * 1000L, "k", part + ":" + i));
          p.send(new ProducerRecord<>(TOPIC + "-b", part, BASE + i * 1000L, "k", part + ":" + i));
        }
      }
      p.flush();
    }
  }

  private List<TopicPartition> partitions(String topic) {
    List<TopicPartition> out = new ArrayList<>();
    for (int i = 0; i < PARTITIONS; i++) {
      out.add(new TopicPartition(topic, i));
    }
    return out;
  }

  /** Polls every consumer until each has an assignment and together they hold all of `want`. */
  private static void pollUntilAssigned(List<Consumer<String, String>> consumers, Set<TopicPartition> want)
      throws InterruptedException {
    KafkaCluster.await(
        Duration.ofSeconds(60),
        "assignment of " + want,
        () -> {
          Set<TopicPartition> held = new HashSet<>();
          int total = 0;
          for (Consumer<String, String> c : consumers) {
            c.poll(Duration.ofMillis(100));
            held.addAll(c.assignment());
            total += c.assignment().size();
            if (c.assignment().isEmpty()) {
              return false;
            }
          }
          return held.equals(want) && total == want.size();
        });
  }

  @ParameterizedTest(name = "{0}")
  @ValueSource(strings = {"range", "roundrobin", "cooperative-sticky"})
  void twoMembersSplitTheTopicsWithEachAssignor(String assignor) throws Exception {
    String cls =
        switch (assignor) {
          case "range" -> RangeAssignor.class.getName();
          case "roundrobin" -> RoundRobinAssignor.class.getName();
          default -> CooperativeStickyAssignor.class.getName();
        };
    String group = "assignor-" + assignor;
    List<String> topics = List.of(TOPIC, TOPIC + "-b");
    Set<TopicPartition> all = new HashSet<>(partitions(TOPIC));
    all.addAll(partitions(TOPIC + "-b"));
    try (Consumer<String, String> a =
            Clients.consumer(cluster, group, ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls);
        Consumer<String, String> b =
            Clients.consumer(cluster, group, ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls)) {
      a.subscribe(topics);
      b.subscribe(topics);
      pollUntilAssigned(List.of(a, b), all);
      assertEquals(6, a.assignment().size(), "balanced: " + a.assignment());
      assertEquals(6, b.assignment().size(), "balanced: " + b.assignment());
      if (assignor.equals("range")) {
        // Range gives each member the same partition numbers of both topics.
        for (TopicPartition tp : a.assignment()) {
          String other = tp.topic().equals(TOPIC) ? TOPIC + "-b" : TOPIC;
          assertTrue(a.assignment().contains(new TopicPartition(other, tp.partition())), a.assignment().toString());
        }
      }
      ConsumerGroupDescription d =
          cluster.admin().describeConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS).get(group);
      assertEquals(GroupState.STABLE, d.groupState());
      assertEquals(2, d.members().size());
      String protocol = assignor;
      assertEquals(protocol, d.partitionAssignor());
    }
  }

  @Test
  void cooperativeStickyRebalancesIncrementally() throws Exception {
    String group = "incremental";
    String cls = CooperativeStickyAssignor.class.getName();
    List<TopicPartition> revokedFromA = new CopyOnWriteArrayList<>();
    List<TopicPartition> assignedToA = new CopyOnWriteArrayList<>();
    try (Consumer<String, String> a =
        Clients.consumer(cluster, group, ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls)) {
      a.subscribe(
          List.of(TOPIC),
          new ConsumerRebalanceListener() {
            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
              revokedFromA.addAll(partitions);
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
              assignedToA.addAll(partitions);
            }
          });
      pollUntilAssigned(List.of(a), new HashSet<>(partitions(TOPIC)));
      assertTrue(revokedFromA.isEmpty());
      try (Consumer<String, String> b =
          Clients.consumer(cluster, group, ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls)) {
        b.subscribe(List.of(TOPIC));
        KafkaCluster.await(
            Duration.ofSeconds(60),
            "second member gets half",
            () -> {
              a.poll(Duration.ofMillis(100));
              b.poll(Duration.ofMillis(100));
              return a.assignment().size() == 3 && b.assignment().size() == 3;
            });
        // Incremental: A gave up exactly the three partitions B took, and kept the rest
        // throughout (an eager rebalance would revoke all six).
        assertEquals(3, revokedFromA.size(), "revoked " + revokedFromA);
        assertEquals(new HashSet<>(revokedFromA), b.assignment());
        Set<TopicPartition> kept = new HashSet<>(partitions(TOPIC));
        kept.removeAll(revokedFromA);
        assertEquals(kept, a.assignment());
      }
    }
  }

  @Test
  void staticMemberRejoinsWithoutARebalance() throws Exception {
    String group = "static";
    Object[] settings = {
      ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-1",
      ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30000,
    };
    Object[] settings2 = {
      ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "instance-2",
      ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 30000,
    };
    try (Consumer<String, String> other = Clients.consumer(cluster, group, settings2)) {
      other.subscribe(List.of(TOPIC));
      Set<TopicPartition> firstAssignment;
      String firstMemberId;
      try (Consumer<String, String> a = Clients.consumer(cluster, group, settings)) {
        a.subscribe(List.of(TOPIC));
        pollUntilAssigned(List.of(a, other), new HashSet<>(partitions(TOPIC)));
        firstAssignment = Set.copyOf(a.assignment());
        ConsumerGroupDescription d =
            cluster.admin().describeConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS).get(group);
        MemberDescription m =
            d.members().stream().filter(x -> x.groupInstanceId().orElse("").equals("instance-1")).findFirst().orElseThrow();
        firstMemberId = m.consumerId();
        // Closing a static member does not send LeaveGroup: the group keeps it.
      }
      int generationBefore = other.groupMetadata().generationId();
      try (Consumer<String, String> again = Clients.consumer(cluster, group, settings)) {
        again.subscribe(List.of(TOPIC));
        KafkaCluster.await(
            Duration.ofSeconds(30),
            "static member back",
            () -> {
              again.poll(Duration.ofMillis(100));
              other.poll(Duration.ofMillis(100));
              return !again.assignment().isEmpty();
            });
        assertEquals(firstAssignment, again.assignment(), "same partitions after rejoining");
        assertEquals(generationBefore, other.groupMetadata().generationId(), "no rebalance for the other member");
        ConsumerGroupDescription d =
            cluster.admin().describeConsumerGroups(List.of(group)).all().get(30, TimeUnit.SECONDS).get(group);
        assertEquals(2, d.members().size(), d.toString());
        MemberDescription m =
            d.members().stream().filter(x -> x.groupInstanceId().orElse("").equals("instance-1")).findFirst().orElseThrow();
        assertFalse(m.consumerId().equals(firstMemberId), "a new member id for the same instance");
      }
    }
  }

  @Test
  void commitSyncAsyncSeekPauseResume() throws Exception {
    String group = "commits";
    TopicPartition p0 = new TopicPartition(TOPIC, 0);
    TopicPartition p1 = new TopicPartition(TOPIC, 1);
    try (Consumer<String, String> c = Clients.consumer(cluster, group)) {
      c.assign(List.of(p0, p1));
      assertNull(c.committed(Set.of(p0)).get(p0));
      c.seek(p0, 10);
      c.seek(p1, 0);
      c.pause(List.of(p1));
      List<ConsumerRecord<String, String>> got = Clients.poll(c, PER_PARTITION - 10, Duration.ofSeconds(30));
      assertEquals(PER_PARTITION - 10, got.size());
      assertTrue(got.stream().allMatch(r -> r.partition() == 0), "paused partition stays quiet");
      assertEquals("0:10", got.get(0).value());
      assertEquals(c.paused(), Set.of(p1));
      c.commitSync(Map.of(p0, new OffsetAndMetadata(20, "sync")));
      c.resume(List.of(p1));
      got = Clients.poll(c, PER_PARTITION, Duration.ofSeconds(30));
      assertEquals(PER_PARTITION, got.size());
      assertTrue(got.stream().allMatch(r -> r.partition() == 1));
      CompletableFuture<Exception> done = new CompletableFuture<>();
      c.commitAsync(Map.of(p1, new OffsetAndMetadata(33, "async")), (offsets, e) -> done.complete(e));
      KafkaCluster.await(Duration.ofSeconds(30), "async commit", () -> {
        c.poll(Duration.ofMillis(50));
        return done.isDone();
      });
      assertNull(done.get(), "commitAsync error");
      Map<TopicPartition, OffsetAndMetadata> committed = c.committed(Set.of(p0, p1));
      assertEquals(20, committed.get(p0).offset());
      assertEquals("sync", committed.get(p0).metadata());
      assertEquals(33, committed.get(p1).offset());
      assertEquals("async", committed.get(p1).metadata());
      // seekToEnd / position and offsetsForTimes.
      c.seekToEnd(List.of(p0));
      assertEquals(PER_PARTITION, c.position(p0));
      Map<TopicPartition, OffsetAndTimestamp> byTime =
          c.offsetsForTimes(Map.of(p0, BASE + 7 * 1000L - 1, p1, BASE + 1000L * PER_PARTITION + 5));
      assertNotNull(byTime.get(p0));
      assertEquals(7, byTime.get(p0).offset());
      assertEquals(BASE + 7000L, byTime.get(p0).timestamp());
      assertNull(byTime.get(p1), "no record at or after that time");
      Map<TopicPartition, Long> begin = c.beginningOffsets(List.of(p0));
      Map<TopicPartition, Long> end = c.endOffsets(List.of(p0));
      assertEquals(0L, begin.get(p0));
      assertEquals((long) PER_PARTITION, end.get(p0));
    }
    // A new consumer of the group starts where the group committed.
    try (Consumer<String, String> c = Clients.consumer(cluster, group)) {
      c.assign(List.of(p0));
      List<ConsumerRecord<String, String>> got = Clients.poll(c, 1, Duration.ofSeconds(30));
      assertEquals("0:20", got.get(0).value());
    }
  }

  @Test
  void subscribedGroupCommitsAndResumes() throws Exception {
    String group = "resume";
    Map<String, Integer> counts = new HashMap<>();
    try (Consumer<String, String> c = Clients.consumer(cluster, group, ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 100)) {
      c.subscribe(List.of(TOPIC));
      List<ConsumerRecord<String, String>> got = Clients.poll(c, 100, Duration.ofSeconds(60));
      assertTrue(got.size() >= 100);
      got.forEach(r -> counts.merge(r.value(), 1, Integer::sum));
      c.commitSync();
    }
    try (Consumer<String, String> c = Clients.consumer(cluster, group)) {
      c.subscribe(List.of(TOPIC));
      int rest = PARTITIONS * PER_PARTITION - counts.size();
      List<ConsumerRecord<String, String>> got = Clients.poll(c, rest, Duration.ofSeconds(60));
      got.forEach(r -> counts.merge(r.value(), 1, Integer::sum));
    }
    assertEquals(PARTITIONS * PER_PARTITION, counts.size(), "every record once");
    assertTrue(counts.values().stream().allMatch(n -> n == 1), "no record twice after a commit");
  }

  /**
   * KIP-848's protocol ({@code group.protocol=consumer}) is not served: like an Apache Kafka
   * cluster with it turned off, the brokers do not advertise ConsumerGroupHeartbeat, so the
   * Java consumer fails its first poll with UnsupportedVersionException and the message
   * that tells the application to fall back to {@code group.protocol=classic}.
   */
  @Test
  void newConsumerProtocolIsRefusedAsKafkaRefusesItWhenOff() throws Exception {
    try (Consumer<String, String> c =
        Clients.consumer(cluster, "kip-848", ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer")) {
      c.subscribe(List.of(TOPIC));
      org.apache.kafka.common.errors.UnsupportedVersionException e =
          org.junit.jupiter.api.Assertions.assertThrows(
              org.apache.kafka.common.errors.UnsupportedVersionException.class,
              () -> {
                long deadline = System.currentTimeMillis() + 30_000;
                while (System.currentTimeMillis() < deadline) {
                  c.poll(Duration.ofMillis(200));
                }
              });
      assertTrue(e.getMessage().contains("group.protocol=classic"), e.getMessage());
    }
    // The fallback the message asks for works.
    try (Consumer<String, String> c =
        Clients.consumer(cluster, "kip-848", ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic")) {
      c.subscribe(List.of(TOPIC));
      assertEquals(PARTITIONS * PER_PARTITION, Clients.poll(c, PARTITIONS * PER_PARTITION, Duration.ofSeconds(60)).size());
    }
  }
}
