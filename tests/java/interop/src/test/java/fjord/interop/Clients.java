package fjord.interop;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** Producer and consumer settings the tests start from. */
final class Clients {
  private Clients() {}

  static Properties producerProps(KafkaCluster cluster) {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, cluster.bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
    p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    return p;
  }

  static Producer<String, String> producer(KafkaCluster cluster, Object... overrides) {
    Properties p = producerProps(cluster);
    for (int i = 0; i < overrides.length; i += 2) {
      p.put(overrides[i], String.valueOf(overrides[i + 1]));
    }
    return new KafkaProducer<>(p);
  }

  static Properties consumerProps(KafkaCluster cluster, String group) {
    Properties p = new Properties();
    p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, cluster.bootstrap());
    p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
    p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    if (group != null) {
      p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    }
    return p;
  }

  static Consumer<String, String> consumer(KafkaCluster cluster, String group, Object... overrides) {
    Properties p = consumerProps(cluster, group);
    for (int i = 0; i < overrides.length; i += 2) {
      p.put(overrides[i], String.valueOf(overrides[i + 1]));
    }
    return new KafkaConsumer<>(p);
  }

  /** Reads the partitions from the start (no group) until {@code count} records came. */
  static List<ConsumerRecord<String, String>> readAll(
      KafkaCluster cluster, Collection<TopicPartition> partitions, int count, Object... overrides) {
    try (Consumer<String, String> c = consumer(cluster, null, overrides)) {
      c.assign(partitions);
      c.seekToBeginning(partitions);
      return poll(c, count, Duration.ofSeconds(60));
    }
  }

  /** Polls until {@code count} records came or {@code timeout} passed. */
  static List<ConsumerRecord<String, String>> poll(
      Consumer<String, String> c, int count, Duration timeout) {
    List<ConsumerRecord<String, String>> out = new ArrayList<>();
    Instant deadline = Instant.now().plus(timeout);
    while (out.size() < count && Instant.now().isBefore(deadline)) {
      c.poll(Duration.ofMillis(200)).forEach(out::add);
    }
    return out;
  }
}
