package fjord.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.junit.jupiter.api.Test;

/**
 * A Kafka Streams 4.4.0 word count with a repartition step (groupBy) and a state store
 * (count) with a compacted changelog and a standby replica, at_least_once, on three
 * Fjord brokers: its counts are right after a broker is killed, after an instance goes
 * (its standby takes over) and after the application restarts with empty state dirs
 * (restored from the changelog).
 */
class StreamsTest extends ClusterTest {
  static final String APP = "wordcount";
  static final String IN = "words-in";
  static final String OUT = "word-counts";
  static final String STORE = "counts";
  static final List<String> WORDS =
      List.of("fjord", "kafka", "log", "replica", "leader", "offset", "stream", "table", "store", "topic");

  private final List<Path> stateDirs = new ArrayList<>();
  private final Map<String, Long> expected = new TreeMap<>();
  private int sentences;

  private Topology topology() {
    StreamsBuilder b = new StreamsBuilder();
    b.stream(IN, Consumed.with(Serdes.String(), Serdes.String()))
        .flatMapValues(v -> Arrays.asList(v.split(" ")))
        .groupBy((k, word) -> word, Grouped.with("by-word", Serdes.String(), Serdes.String()))
        .count(Materialized.as(STORE))
        .toStream()
        .to(OUT, Produced.with(Serdes.String(), Serdes.Long()));
    return b.build();
  }

  private KafkaStreams start(String instance) throws Exception {
    Path dir = Files.createTempDirectory("streams-" + instance + "-");
    stateDirs.add(dir);
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, APP);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, cluster.bootstrap());
    p.put(StreamsConfig.STATE_DIR_CONFIG, dir.toString());
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.AT_LEAST_ONCE);
    p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 3);
    p.put(StreamsConfig.NUM_STANDBY_REPLICAS_CONFIG, 1);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
    p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), 10_000);
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1_000);
    p.put(StreamsConfig.producerPrefix("delivery.timeout.ms"), 120_000);
    KafkaStreams s = new KafkaStreams(topology(), p);
    s.start();
    return s;
  }

  private static void awaitRunning(KafkaStreams... all) throws InterruptedException {
    KafkaCluster.await(Duration.ofSeconds(90), "streams RUNNING", () ->
        Arrays.stream(all).allMatch(s -> s.state() == KafkaStreams.State.RUNNING));
  }

  /** Sends `count` sentences of three words each, keeping the true counts. */
  private void send(int count) throws Exception {
    try (Producer<String, String> p = Clients.producer(cluster)) {
      for (int i = 0; i < count; i++) {
        int n = sentences++;
        String sentence =
            WORDS.get(n % WORDS.size()) + " " + WORDS.get((n * 7 + 3) % WORDS.size()) + " "
                + WORDS.get((n * 3 + 1) % WORDS.size());
        for (String w : sentence.split(" ")) {
          expected.merge(w, 1L, Long::sum);
        }
        p.send(new ProducerRecord<>(IN, Integer.toString(n), sentence));
      }
      p.flush();
    }
  }

  /** Reads the output topic until the latest count of every word is what was sent. */
  private void awaitCounts() throws Exception {
    Properties props = Clients.consumerProps(cluster, null);
    Map<String, Long> latest = new HashMap<>();
    try (Consumer<String, Long> c =
        new KafkaConsumer<>(props, new StringDeserializer(), new LongDeserializer())) {
      var parts = c.partitionsFor(OUT).stream()
          .map(i -> new org.apache.kafka.common.TopicPartition(OUT, i.partition())).toList();
      c.assign(parts);
      c.seekToBeginning(parts);
      long deadline = System.currentTimeMillis() + 120_000;
      while (!latest.equals(expected) && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, Long> r : c.poll(Duration.ofMillis(200))) {
          latest.put(r.key(), r.value());
        }
      }
    }
    assertEquals(expected, new TreeMap<>(latest), "word counts");
  }

  @Test
  void wordCountSurvivesABrokerKillAnInstanceLossAndARestart() throws Exception {
    cluster.createTopic(IN, 3, (short) 3);
    cluster.createTopic(OUT, 3, (short) 3);
    KafkaStreams a = start("a");
    KafkaStreams b = start("b");
    try {
      awaitRunning(a, b);
      send(300);
      awaitCounts();

      // The internal topics: a repartition topic and a compacted changelog, both RF 3.
      Set<String> topics = cluster.admin().listTopics().names().get(30, TimeUnit.SECONDS);
      String repartition = APP + "-by-word-repartition";
      String changelog = APP + "-" + STORE + "-changelog";
      assertTrue(topics.contains(repartition), topics.toString());
      assertTrue(topics.contains(changelog), topics.toString());
      ConfigResource cl = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
      Config clConfig = cluster.admin().describeConfigs(List.of(cl)).all().get(30, TimeUnit.SECONDS).get(cl);
      assertEquals("compact", clConfig.get("cleanup.policy").value());
      cluster.admin().describeTopics(Set.of(changelog)).allTopicNames().get(30, TimeUnit.SECONDS)
          .get(changelog).partitions().forEach(p -> assertEquals(3, p.replicas().size()));
      // With two instances and one standby, each instance holds standby tasks.
      KafkaCluster.await(Duration.ofSeconds(60), "standby tasks", () ->
          a.metadataForLocalThreads().stream().anyMatch(t -> !t.standbyTasks().isEmpty())
              || b.metadataForLocalThreads().stream().anyMatch(t -> !t.standbyTasks().isEmpty()));

      // A broker dies mid-stream (kill -9) and comes back: one that leads partitions but
      // is not the group's coordinator, so that the kill moves leaders, not the group
      // (a lost coordinator may fail a commit and, at least once, reprocess records).
      int coordinator =
          cluster.admin().describeConsumerGroups(List.of(APP)).all().get(30, TimeUnit.SECONDS)
              .get(APP).coordinator().id();
      Fjord.Broker victim = cluster.broker(coordinator == 2 ? 3 : 2);
      victim.kill();
      send(200);
      awaitCounts();
      victim.restart();
      cluster.awaitBrokers(3);
      send(100);
      awaitCounts();

      // One instance goes: the other takes over its tasks (from its standbys).
      b.close(Duration.ofSeconds(60));
      awaitRunning(a);
      send(100);
      awaitCounts();
    } finally {
      a.close(Duration.ofSeconds(60));
      b.close(Duration.ofSeconds(60));
    }

    // The whole application restarts with empty state dirs: the stores are restored from
    // the changelog, and counting goes on from there.
    KafkaStreams c = start("c");
    try {
      awaitRunning(c);
      send(100);
      awaitCounts();
    } finally {
      c.close(Duration.ofSeconds(60));
      c.cleanUp();
    }
    for (Path dir : stateDirs) {
      Proc.deleteTree(dir);
    }
  }
}
