package fjord.interop;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

/** Kafka's Java producer: idempotence, every acks level and codec, headers, big batches. */
class ProducerTest extends ClusterTest {

  @ParameterizedTest(name = "compression {0}, acks {1}, idempotent {2}")
  @CsvSource({
    "none, all, true",
    "gzip, all, true",
    "snappy, 1, false",
    "lz4, all, true",
    "zstd, all, true",
    "zstd, 0, false",
    "none, 1, false",
  })
  void producesEveryCodecAndAcksLevel(String codec, String acks, boolean idempotent)
      throws Exception {
    String topic = "codec-" + codec + "-acks-" + acks;
    cluster.createTopic(topic, 3, (short) 3);
    int n = 600;
    try (Producer<String, String> p =
        Clients.producer(
            cluster,
            ProducerConfig.COMPRESSION_TYPE_CONFIG, codec,
            ProducerConfig.ACKS_CONFIG, acks,
            ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, idempotent,
            ProducerConfig.LINGER_MS_CONFIG, 5)) {
      List<Future<RecordMetadata>> sent = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        ProducerRecord<String, String> r =
            new ProducerRecord<>(topic, "k" + (i % 17), "value-" + i + "-" + "x".repeat(i % 50));
        r.headers().add("seq", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
        r.headers().add("codec", codec.getBytes(StandardCharsets.UTF_8));
        sent.add(p.send(r));
      }
      p.flush();
      for (Future<RecordMetadata> f : sent) {
        RecordMetadata m = f.get(60, TimeUnit.SECONDS);
        if (!acks.equals("0")) {
          assertTrue(m.hasOffset() && m.offset() >= 0, "offset of " + m);
        }
      }
    }
    List<TopicPartition> parts =
        List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1), new TopicPartition(topic, 2));
    List<ConsumerRecord<String, String>> got = Clients.readAll(cluster, parts, n);
    assertEquals(n, got.size(), "records read back");
    boolean[] seen = new boolean[n];
    for (ConsumerRecord<String, String> r : got) {
      Header seq = r.headers().lastHeader("seq");
      int i = Integer.parseInt(new String(seq.value(), StandardCharsets.UTF_8));
      assertEquals("value-" + i + "-" + "x".repeat(i % 50), r.value());
      assertEquals("k" + (i % 17), r.key());
      assertArrayEquals(codec.getBytes(StandardCharsets.UTF_8), r.headers().lastHeader("codec").value());
      assertTrue(r.timestamp() > 0, "timestamp");
      seen[i] = true;
    }
    for (int i = 0; i < n; i++) {
      assertTrue(seen[i], "record " + i + " missing");
    }
  }

  @Test
  void keyedRecordsKeepTheirOrderPerPartition() throws Exception {
    String topic = "ordered";
    cluster.createTopic(topic, 4, (short) 3);
    try (Producer<String, String> p =
        Clients.producer(cluster, ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5)) {
      for (int i = 0; i < 2000; i++) {
        p.send(new ProducerRecord<>(topic, "key-" + (i % 8), Integer.toString(i)));
      }
      p.flush();
    }
    List<TopicPartition> parts = new ArrayList<>();
    for (int i = 0; i < 4; i++) {
      parts.add(new TopicPartition(topic, i));
    }
    List<ConsumerRecord<String, String>> got = Clients.readAll(cluster, parts, 2000);
    assertEquals(2000, got.size());
    Map<String, Integer> last = new java.util.HashMap<>();
    for (ConsumerRecord<String, String> r : got) {
      int v = Integer.parseInt(r.value());
      Integer before = last.put(r.key(), v);
      assertTrue(before == null || before < v, r.key() + ": " + before + " then " + v);
    }
  }

  @ParameterizedTest(name = "compression {0}")
  @ValueSource(strings = {"none", "zstd"})
  void batchesNearMaxMessageBytesAreAcceptedAndBiggerOnesRefused(String codec) throws Exception {
    String topic = "large-" + codec;
    int max = 512 * 1024;
    cluster.createTopic(topic, 1, (short) 3, Map.of("max.message.bytes", Integer.toString(max)));
    java.util.Properties props = Clients.producerProps(cluster);
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
    props.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(4 * max));
    props.put(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(max));
    props.put(ProducerConfig.RETRIES_CONFIG, "0");
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
    java.util.Random random = new java.util.Random(7);
    try (Producer<byte[], byte[]> p = new KafkaProducer<>(props)) {
      // Random bytes do not compress: the batch is as big compressed as not.
      byte[] fits = new byte[max - 200];
      random.nextBytes(fits);
      RecordMetadata m = p.send(new ProducerRecord<>(topic, fits)).get(60, TimeUnit.SECONDS);
      assertEquals(0, m.offset());
      byte[] tooBig = new byte[max + 1024];
      random.nextBytes(tooBig);
      ExecutionException e =
          assertThrows(
              ExecutionException.class,
              () -> p.send(new ProducerRecord<>(topic, tooBig)).get(60, TimeUnit.SECONDS));
      assertInstanceOf(RecordTooLargeException.class, e.getCause(), e.toString());
      // The partition still takes records after the refusal.
      assertEquals(1, p.send(new ProducerRecord<>(topic, new byte[] {1})).get(60, TimeUnit.SECONDS).offset());
      try (var c =
          new org.apache.kafka.clients.consumer.KafkaConsumer<byte[], byte[]>(
              Clients.consumerProps(cluster, null),
              new org.apache.kafka.common.serialization.ByteArrayDeserializer(),
              new org.apache.kafka.common.serialization.ByteArrayDeserializer())) {
        TopicPartition tp = new TopicPartition(topic, 0);
        c.assign(List.of(tp));
        c.seekToBeginning(List.of(tp));
        List<byte[]> values = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 60_000;
        while (values.size() < 2 && System.currentTimeMillis() < deadline) {
          c.poll(java.time.Duration.ofMillis(200)).forEach(r -> values.add(r.value()));
        }
        assertEquals(2, values.size());
        assertTrue(Arrays.equals(fits, values.get(0)), "large record read back intact");
      }
    }
  }
}
