package fjord.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooKeeper;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Apache Kafka 3.9 in ZooKeeper mode, three brokers, with the coordination service as
 * their ZooKeeper: they register, elect a controller, create topics, fail over when the
 * controller is killed, reassign a partition with kafka-reassign-partitions, and keep
 * running through a restart of the coordination service. Runs on fjord-coordinator
 * ({@link KafkaOnFjordCoordinatorTest}) and on ZooKeeper 3.8 as the reference
 * ({@link KafkaOnZooKeeperReferenceTest}).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
abstract class KafkaOnZooKeeperTest {
  private Path dir;
  private Coordination zk;
  private ApacheKafkaZk kafka;
  private ZooKeeper reader;
  private int sent;

  abstract String kind();

  @RegisterExtension final Failures failures = new Failures();

  @BeforeAll
  void start() throws Exception {
    dir = Files.createTempDirectory("kafka39-" + kind() + "-");
    zk = Coordination.start(kind(), dir.resolve("zk"));
    kafka = new ApacheKafkaZk(zk, dir, 3);
    reader = connect();
  }

  @AfterAll
  void stop() throws Exception {
    if (failures.any()) {
      System.err.println("files kept in " + dir + "\n" + kafka.tails());
    }
    if (reader != null) {
      reader.close();
    }
    if (kafka != null) {
      kafka.close();
    }
    zk.close();
    if (!failures.any()) {
      Proc.deleteTree(dir);
    }
  }

  private ZooKeeper connect() throws Exception {
    CountDownLatch up = new CountDownLatch(1);
    ZooKeeper z =
        new ZooKeeper(zk.connectString() + ApacheKafkaZk.CHROOT, 10000, e -> {
          if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
            up.countDown();
          }
        });
    assertTrue(up.await(30, TimeUnit.SECONDS));
    return z;
  }

  /** The broker ids registered under /kafka/brokers/ids (read through a fresh sync). */
  private Set<String> registered() throws Exception {
    reader.sync("/brokers/ids");
    return Set.copyOf(reader.getChildren("/brokers/ids", false));
  }

  /** The controller's id from /kafka/controller, if there is one. */
  private Optional<Integer> zkController() {
    try {
      String json = new String(reader.getData("/controller", false, null), StandardCharsets.UTF_8);
      java.util.regex.Matcher m = java.util.regex.Pattern.compile("\"brokerid\":(\\d+)").matcher(json);
      return m.find() ? Optional.of(Integer.parseInt(m.group(1))) : Optional.empty();
    } catch (Exception e) {
      return Optional.empty();
    }
  }

  private void produce(String topic, int count) throws Exception {
    Map<String, Object> p =
        Map.of(
            ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrap(),
            ProducerConfig.ACKS_CONFIG, "all",
            ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120000);
    try (Producer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
      for (int i = 0; i < count; i++) {
        producer.send(new ProducerRecord<>(topic, "k" + i, topic + "-" + (sent++))).get(120, TimeUnit.SECONDS);
      }
    }
  }

  private List<String> readAll(String topic, int expected) {
    Map<String, Object> p =
        Map.of(
            ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, kafka.bootstrap(),
            ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    List<String> out = new ArrayList<>();
    try (Consumer<String, String> c = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
      List<TopicPartition> parts =
          c.partitionsFor(topic).stream().map(i -> new TopicPartition(topic, i.partition())).toList();
      c.assign(parts);
      c.seekToBeginning(parts);
      long deadline = System.currentTimeMillis() + 60_000;
      while (out.size() < expected && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
          out.add(r.value());
        }
      }
    }
    return out;
  }

  private void awaitInSync(String topic) throws InterruptedException {
    KafkaCluster.await(Duration.ofSeconds(90), "ISR of " + topic, () -> {
      try {
        TopicDescription d = kafka.admin().describeTopics(Set.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic);
        return d.partitions().stream().allMatch(x -> x.isr().size() == x.replicas().size() && x.leader() != null);
      } catch (Exception e) {
        return false;
      }
    });
  }

  @Test
  @Order(1)
  void brokersRegisterElectAControllerAndServeATopic() throws Exception {
    assertEquals(Set.of("1", "2", "3"), registered());
    Optional<Integer> controller = zkController();
    assertTrue(controller.isPresent(), "a /controller znode");
    assertEquals(controller.get(), kafka.controller());
    kafka.admin().createTopics(List.of(new NewTopic("zk-topic", 3, (short) 3))).all().get(60, TimeUnit.SECONDS);
    assertNotNull(reader.exists("/brokers/topics/zk-topic", false), "topic znode");
    awaitInSync("zk-topic");
    produce("zk-topic", 100);
    assertEquals(100, readAll("zk-topic", 100).size());
  }

  @Test
  @Order(2)
  void controllerFailsOver() throws Exception {
    int old = kafka.controller();
    kafka.kill(old);
    KafkaCluster.await(Duration.ofSeconds(60), "a new controller", () ->
        zkController().filter(c -> c != old).isPresent());
    KafkaCluster.await(Duration.ofSeconds(60), "broker " + old + " deregistered", () -> {
      try {
        return !registered().contains(Integer.toString(old));
      } catch (Exception e) {
        return false;
      }
    });
    KafkaCluster.await(Duration.ofSeconds(60), "leaders moved off " + old, () -> {
      try {
        TopicDescription d = kafka.admin().describeTopics(Set.of("zk-topic")).allTopicNames().get(10, TimeUnit.SECONDS).get("zk-topic");
        return d.partitions().stream().allMatch(p -> p.leader() != null && p.leader().id() != old);
      } catch (Exception e) {
        return false;
      }
    });
    produce("zk-topic", 50);
    kafka.restart(old);
    KafkaCluster.await(Duration.ofSeconds(60), "broker " + old + " back", () -> {
      try {
        return registered().contains(Integer.toString(old));
      } catch (Exception e) {
        return false;
      }
    });
    awaitInSync("zk-topic");
    assertEquals(150, readAll("zk-topic", 150).size());
    assertNotEquals(Optional.empty(), zkController());
  }

  @Test
  @Order(3)
  void reassignsAPartitionWithKafkaReassignPartitions() throws Exception {
    kafka.admin()
        .createTopics(List.of(new NewTopic("zk-move", Map.of(0, List.of(1, 2)))))
        .all()
        .get(60, TimeUnit.SECONDS);
    awaitInSync("zk-move");
    produce("zk-move", 40);
    Path plan = dir.resolve("reassign.json");
    Files.writeString(plan, "{\"version\":1,\"partitions\":[{\"topic\":\"zk-move\",\"partition\":0,\"replicas\":[2,3]}]}");
    String main = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
    KafkaTool.Result started =
        KafkaTool.run(main, null, 120, "--bootstrap-server", kafka.bootstrap(), "--reassignment-json-file", plan.toString(), "--execute");
    assertEquals(0, started.exit(), started.toString());
    assertTrue(started.stdout().contains("Successfully started partition reassignment for zk-move-0"), started.toString());
    KafkaCluster.await(Duration.ofSeconds(90), "reassignment complete", () -> {
      try {
        KafkaTool.Result v =
            KafkaTool.run(main, null, 120, "--bootstrap-server", kafka.bootstrap(), "--reassignment-json-file", plan.toString(), "--verify");
        return v.exit() == 0 && v.stdout().contains("Reassignment of partition zk-move-0 is completed.");
      } catch (Exception e) {
        return false;
      }
    });
    TopicDescription d = kafka.admin().describeTopics(Set.of("zk-move")).allTopicNames().get(30, TimeUnit.SECONDS).get("zk-move");
    assertEquals(List.of(2, 3), d.partitions().get(0).replicas().stream().map(n -> n.id()).toList());
    // The assignment is in the coordination service, in Kafka's layout.
    String assignment = new String(reader.getData("/brokers/topics/zk-move", false, null), StandardCharsets.UTF_8);
    assertTrue(assignment.contains("\"0\":[2,3]"), assignment);
    assertEquals(40, readAll("zk-move", 40).size());
  }

  @Test
  @Order(4)
  void keepsRunningThroughACoordinationServiceRestart() throws Exception {
    zk.restart();
    // The brokers reconnect with their sessions: no broker registers again and the
    // controller stays.
    int controller = kafka.controller();
    reader.close();
    reader = connect();
    KafkaCluster.await(Duration.ofSeconds(60), "all brokers registered", () -> {
      try {
        return registered().equals(Set.of("1", "2", "3"));
      } catch (Exception e) {
        return false;
      }
    });
    kafka.admin().createTopics(List.of(new NewTopic("zk-after", 2, (short) 3))).all().get(60, TimeUnit.SECONDS);
    awaitInSync("zk-after");
    produce("zk-after", 30);
    assertEquals(30, readAll("zk-after", 30).size());
    produce("zk-topic", 10);
    assertEquals(160, readAll("zk-topic", 160).size());
    assertEquals(Optional.of(controller), zkController());
  }
}
