package fjord.interop;

/** {@link KafkaOnZooKeeperTest} on Apache ZooKeeper 3.8, the reference. */
class KafkaOnZooKeeperReferenceTest extends KafkaOnZooKeeperTest {
  @Override
  String kind() {
    return "zookeeper";
  }
}
