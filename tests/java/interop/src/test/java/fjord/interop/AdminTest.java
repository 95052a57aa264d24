package fjord.interop;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.message.AlterConfigsRequestData;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.requests.AlterConfigsRequest;
import org.apache.kafka.common.requests.AlterConfigsResponse;
import org.junit.jupiter.api.Test;

/** Kafka's AdminClient: topics, partitions, configs, cluster, offsets, records, groups. */
class AdminTest extends ClusterTest {
  private static final long T = 30;

  private Admin admin() {
    return cluster.admin();
  }

  private void produce(String topic, int partition, int count) throws Exception {
    try (Producer<String, String> p = Clients.producer(cluster)) {
      for (int i = 0; i < count; i++) {
        p.send(new ProducerRecord<>(topic, partition, 1_000_000L + i * 10L, "k" + i, "v" + i));
      }
      p.flush();
    }
  }

  @Test
  void describeCluster() throws Exception {
    DescribeClusterResult r = admin().describeCluster();
    Collection<Node> nodes = r.nodes().get(T, TimeUnit.SECONDS);
    assertEquals(Set.of(1, 2, 3), nodes.stream().map(Node::id).collect(Collectors.toSet()));
    Node controller = r.controller().get(T, TimeUnit.SECONDS);
    assertTrue(Set.of(1, 2, 3).contains(controller.id()), "controller " + controller);
    String clusterId = r.clusterId().get(T, TimeUnit.SECONDS);
    assertNotNull(clusterId);
    assertFalse(clusterId.isBlank());
  }

  @Test
  void topicsAndPartitions() throws Exception {
    String topic = "admin-topic";
    admin()
        .createTopics(List.of(new NewTopic(topic, 3, (short) 3).configs(Map.of("retention.ms", "3600000"))))
        .all()
        .get(T, TimeUnit.SECONDS);
    cluster.awaitLeaders(topic, 3);
    assertTrue(admin().listTopics().names().get(T, TimeUnit.SECONDS).contains(topic));
    TopicDescription d = admin().describeTopics(Set.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS).get(topic);
    assertEquals(3, d.partitions().size());
    assertNotEquals(Uuid.ZERO_UUID, d.topicId());
    d.partitions().forEach(p -> assertEquals(3, p.replicas().size(), p.toString()));
    // Describing by id finds the same topic.
    TopicDescription byId =
        admin().describeTopics(org.apache.kafka.common.TopicCollection.ofTopicIds(List.of(d.topicId())))
            .allTopicIds().get(T, TimeUnit.SECONDS).get(d.topicId());
    assertEquals(topic, byId.name());

    ExecutionException exists =
        assertThrows(
            ExecutionException.class,
            () -> admin().createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(T, TimeUnit.SECONDS));
    assertInstanceOf(TopicExistsException.class, exists.getCause());

    admin().createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get(T, TimeUnit.SECONDS);
    cluster.awaitLeaders(topic, 5);
    ExecutionException fewer =
        assertThrows(
            ExecutionException.class,
            () -> admin().createPartitions(Map.of(topic, NewPartitions.increaseTo(2))).all().get(T, TimeUnit.SECONDS));
    assertInstanceOf(InvalidPartitionsException.class, fewer.getCause());

    admin().deleteTopics(List.of(topic)).all().get(T, TimeUnit.SECONDS);
    KafkaCluster.await(Duration.ofSeconds(30), "topic gone", () -> {
      try {
        return !admin().listTopics().names().get(T, TimeUnit.SECONDS).contains(topic);
      } catch (Exception e) {
        return false;
      }
    });
    ExecutionException unknown =
        assertThrows(
            ExecutionException.class,
            () -> admin().describeTopics(Set.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS));
    assertInstanceOf(UnknownTopicOrPartitionException.class, unknown.getCause());
  }

  private Config topicConfig(String topic) throws Exception {
    ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    return admin().describeConfigs(List.of(r)).all().get(T, TimeUnit.SECONDS).get(r);
  }

  @Test
  void incrementalAlterConfigs() throws Exception {
    String topic = "configs-incremental";
    cluster.createTopic(topic, 1, (short) 3);
    ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    ConfigEntry retention = topicConfig(topic).get("retention.ms");
    assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, retention.source());

    admin()
        .incrementalAlterConfigs(
            Map.of(
                r,
                List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "123456"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.APPEND))))
        .all()
        .get(T, TimeUnit.SECONDS);
    Config c = topicConfig(topic);
    assertEquals("123456", c.get("retention.ms").value());
    assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, c.get("retention.ms").source());
    assertEquals("delete,compact", c.get("cleanup.policy").value());

    admin()
        .incrementalAlterConfigs(
            Map.of(
                r,
                List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE),
                    new AlterConfigOp(new ConfigEntry("cleanup.policy", "delete"), AlterConfigOp.OpType.SUBTRACT))))
        .all()
        .get(T, TimeUnit.SECONDS);
    c = topicConfig(topic);
    assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, c.get("retention.ms").source());
    assertEquals("compact", c.get("cleanup.policy").value());

    // A value of the wrong type is refused and changes nothing.
    ExecutionException bad =
        assertThrows(
            ExecutionException.class,
            () ->
                admin()
                    .incrementalAlterConfigs(
                        Map.of(r, List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "soon"), AlterConfigOp.OpType.SET))))
                    .all()
                    .get(T, TimeUnit.SECONDS));
    assertInstanceOf(org.apache.kafka.common.errors.InvalidConfigurationException.class, bad.getCause());
  }

  @Test
  void alterConfigsReplacesTheWholeSet() throws Exception {
    String topic = "configs-legacy";
    cluster.createTopic(topic, 1, (short) 3, Map.of("retention.ms", "999999", "segment.ms", "600000"));
    // The 4.x Admin no longer sends AlterConfigs; older clients and tools do. Send it
    // with the client's own request classes.
    AlterConfigsRequestData data = new AlterConfigsRequestData();
    AlterConfigsRequestData.AlterConfigsResource res =
        new AlterConfigsRequestData.AlterConfigsResource()
            .setResourceType(ConfigResource.Type.TOPIC.id())
            .setResourceName(topic);
    res.configs().add(new AlterConfigsRequestData.AlterableConfig().setName("retention.ms").setValue("424242"));
    res.configs().add(new AlterConfigsRequestData.AlterableConfig().setName("max.message.bytes").setValue("200000"));
    data.resources().add(res);
    for (Fjord.Broker b : cluster.brokers) {
      // Topic configs may be altered through any broker.
      AlterConfigsResponse resp =
          (AlterConfigsResponse) KafkaWire.send(b.address, new AlterConfigsRequest(data, (short) 2));
      assertEquals(Errors.NONE, resp.errors().values().iterator().next().error(), resp.toString());
    }
    Config c = topicConfig(topic);
    assertEquals("424242", c.get("retention.ms").value());
    assertEquals("200000", c.get("max.message.bytes").value());
    // segment.ms was not in the request: AlterConfigs replaced the set, so it is back to its default.
    assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, c.get("segment.ms").source());

    // validate_only changes nothing.
    AlterConfigsRequestData dry = data.duplicate().setValidateOnly(true);
    dry.resources().iterator().next().configs().iterator().next().setValue("1");
    AlterConfigsResponse resp =
        (AlterConfigsResponse) KafkaWire.send(cluster.brokers.get(0).address, new AlterConfigsRequest(dry, (short) 2));
    assertEquals(Errors.NONE, resp.errors().values().iterator().next().error());
    assertEquals("424242", topicConfig(topic).get("retention.ms").value());
  }

  @Test
  void brokerConfigsDescribe() throws Exception {
    ConfigResource r = new ConfigResource(ConfigResource.Type.BROKER, "1");
    Config c = admin().describeConfigs(List.of(r)).all().get(T, TimeUnit.SECONDS).get(r);
    assertNotNull(c.get("log.retention.ms"), c.toString());
  }

  @Test
  void listOffsetsAndDeleteRecords() throws Exception {
    String topic = "offsets";
    cluster.createTopic(topic, 1, (short) 3);
    produce(topic, 0, 30);
    TopicPartition tp = new TopicPartition(topic, 0);
    Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> earliest =
        admin().listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get(T, TimeUnit.SECONDS);
    Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> latest =
        admin().listOffsets(Map.of(tp, OffsetSpec.latest())).all().get(T, TimeUnit.SECONDS);
    Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> atTime =
        admin().listOffsets(Map.of(tp, OffsetSpec.forTimestamp(1_000_000L + 95))).all().get(T, TimeUnit.SECONDS);
    Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> maxTs =
        admin().listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).all().get(T, TimeUnit.SECONDS);
    assertEquals(0, earliest.get(tp).offset());
    assertEquals(30, latest.get(tp).offset());
    assertEquals(10, atTime.get(tp).offset());
    assertEquals(29, maxTs.get(tp).offset());
    assertEquals(1_000_000L + 290, maxTs.get(tp).timestamp());

    assertEquals(
        12,
        admin().deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(12))).lowWatermarks().get(tp).get(T, TimeUnit.SECONDS).lowWatermark());
    assertEquals(12, admin().listOffsets(Map.of(tp, OffsetSpec.earliest())).all().get(T, TimeUnit.SECONDS).get(tp).offset());
    List<ConsumerRecord<String, String>> rest = Clients.readAll(cluster, List.of(tp), 18);
    assertEquals(18, rest.size());
    assertEquals(12, rest.get(0).offset());
    ExecutionException beyond =
        assertThrows(
            ExecutionException.class,
            () -> admin().deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(31))).all().get(T, TimeUnit.SECONDS));
    assertInstanceOf(org.apache.kafka.common.errors.OffsetOutOfRangeException.class, beyond.getCause());
  }

  @Test
  void consumerGroups() throws Exception {
    String topic = "grouped";
    String group = "admin-group";
    cluster.createTopic(topic, 2, (short) 3);
    produce(topic, 0, 10);
    produce(topic, 1, 10);
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);
    try (Consumer<String, String> c = Clients.consumer(cluster, group)) {
      c.subscribe(List.of(topic));
      Clients.poll(c, 20, Duration.ofSeconds(60));
      c.commitSync(Map.of(p0, new OffsetAndMetadata(7), p1, new OffsetAndMetadata(9)));
      Collection<ConsumerGroupListing> listed = admin().listConsumerGroups().all().get(T, TimeUnit.SECONDS);
      assertTrue(listed.stream().anyMatch(g -> g.groupId().equals(group)), listed.toString());
      Collection<GroupListing> groups = admin().listGroups().all().get(T, TimeUnit.SECONDS);
      GroupListing g = groups.stream().filter(x -> x.groupId().equals(group)).findFirst().orElseThrow();
      assertEquals(GroupState.STABLE, g.groupState().orElseThrow());
      ConsumerGroupDescription d =
          admin().describeConsumerGroups(List.of(group)).all().get(T, TimeUnit.SECONDS).get(group);
      assertEquals(1, d.members().size());
      assertEquals(Set.of(p0, p1), d.members().iterator().next().assignment().topicPartitions());
      assertNotNull(d.coordinator());
      // A group with members cannot have its offsets altered or be deleted.
      ExecutionException busy =
          assertThrows(
              ExecutionException.class,
              () -> admin().deleteConsumerGroups(List.of(group)).all().get(T, TimeUnit.SECONDS));
      assertInstanceOf(GroupNotEmptyException.class, busy.getCause());
    }
    Map<TopicPartition, OffsetAndMetadata> offsets =
        admin().listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(T, TimeUnit.SECONDS);
    assertEquals(7, offsets.get(p0).offset());
    assertEquals(9, offsets.get(p1).offset());

    admin().alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(2))).all().get(T, TimeUnit.SECONDS);
    offsets = admin().listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(T, TimeUnit.SECONDS);
    assertEquals(2, offsets.get(p0).offset());

    admin().deleteConsumerGroupOffsets(group, Set.of(p1)).all().get(T, TimeUnit.SECONDS);
    offsets = admin().listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(T, TimeUnit.SECONDS);
    assertFalse(offsets.containsKey(p1) && offsets.get(p1) != null, offsets.toString());

    admin().deleteConsumerGroups(List.of(group)).all().get(T, TimeUnit.SECONDS);
    Collection<ConsumerGroupListing> after = admin().listConsumerGroups().all().get(T, TimeUnit.SECONDS);
    assertFalse(after.stream().anyMatch(g -> g.groupId().equals(group)), after.toString());
  }

  @Test
  void preferredLeaderElection() throws Exception {
    String topic = "elect";
    cluster.createTopic(topic, 3, (short) 3);
    cluster.awaitInSync(topic);
    Set<TopicPartition> parts = Set.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1), new TopicPartition(topic, 2));
    // Every leader is already its preferred replica: Kafka answers ELECTION_NOT_NEEDED,
    // which the Admin reports as success with no error per partition.
    var result = admin().electLeaders(ElectionType.PREFERRED, parts).partitions().get(T, TimeUnit.SECONDS);
    assertEquals(parts, result.keySet());
    result.values().forEach(e -> assertTrue(e.isEmpty() || e.get() instanceof org.apache.kafka.common.errors.ElectionNotNeededException, e.toString()));
    TopicDescription d = admin().describeTopics(Set.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS).get(topic);
    d.partitions().forEach(p -> assertEquals(p.replicas().get(0).id(), p.leader().id(), p.toString()));
  }
}
