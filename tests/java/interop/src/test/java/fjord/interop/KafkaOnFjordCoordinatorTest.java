package fjord.interop;

/** {@link KafkaOnZooKeeperTest} with fjord-coordinator as Kafka's ZooKeeper. */
class KafkaOnFjordCoordinatorTest extends KafkaOnZooKeeperTest {
  @Override
  String kind() {
    return "fjord";
  }
}
