package fjord.interop;

import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Kafka's Java client against a running cluster, at the newest versions it negotiates
 * (Produce 11, Fetch 17 with topic ids, Metadata 12, JoinGroup 9, OffsetCommit and
 * OffsetFetch 9, FindCoordinator 4, ListGroups 5, CreateTopics 7): create a replicated
 * topic, produce with an idempotent acks=all producer, consume it in a group, commit,
 * and read the group back through the admin client. Exits 1 with a reason on any
 * mismatch.
 *
 * <p>Usage: ClientCheck BOOTSTRAP TOPIC GROUP MESSAGES
 */
public final class ClientCheck {
  private ClientCheck() {}

  private static void check(boolean ok, String what) {
    if (!ok) {
      System.err.println("check failed: " + what);
      System.exit(1);
    }
  }

  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    String topic = args[1];
    String group = args[2];
    int messages = Integer.parseInt(args[3]);
    Properties common = new Properties();
    common.put("bootstrap.servers", bootstrap);
    common.put("request.timeout.ms", "20000");

    try (Admin admin = Admin.create(common)) {
      admin.createTopics(List.of(new NewTopic(topic, 3, (short) 3))).all().get();
      TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
      check(d.partitions().size() == 3, "3 partitions, got " + d.partitions().size());
      check(!d.topicId().equals(Uuid.ZERO_UUID), "a topic id");
      check(
          d.partitions().stream().allMatch(p -> p.replicas().size() == 3 && p.isr().size() == 3),
          "3 replicas in sync: " + d.partitions());
      check(admin.describeCluster().nodes().get().size() == 3, "3 brokers");
    }

    Properties pp = new Properties();
    pp.putAll(common);
    pp.put("acks", "all");
    pp.put("enable.idempotence", "true");
    try (Producer<String, String> p =
        new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
      for (int i = 0; i < messages; i++) {
        p.send(new ProducerRecord<>(topic, "k" + i, "v" + i)).get();
      }
    }

    Properties cp = new Properties();
    cp.putAll(common);
    cp.put("group.id", group);
    cp.put("auto.offset.reset", "earliest");
    cp.put("enable.auto.commit", "false");
    Set<String> seen = new HashSet<>();
    Map<TopicPartition, OffsetAndMetadata> committed;
    try (Consumer<String, String> c =
        new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
      c.subscribe(List.of(topic));
      long deadline = System.currentTimeMillis() + 60_000;
      while (seen.size() < messages && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
          check(r.value().equals("v" + r.key().substring(1)), "value matches key: " + r);
          seen.add(r.value());
        }
      }
      check(seen.size() == messages, "consumed " + seen.size() + " of " + messages);
      c.commitSync();
      committed = c.committed(c.assignment());
    }
    long total = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
    check(total == messages, "committed offsets add up to " + total);

    try (Admin admin = Admin.create(common)) {
      boolean listed = false;
      for (GroupListing g : admin.listGroups().all().get()) {
        listed |= g.groupId().equals(group);
      }
      check(listed, "the group is listed");
      Map<TopicPartition, OffsetAndMetadata> fetched =
          admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
      check(fetched.equals(committed), "admin offsets " + fetched + " = " + committed);
    }
    System.out.println("ok: " + messages + " messages, offsets " + committed);
  }
}
