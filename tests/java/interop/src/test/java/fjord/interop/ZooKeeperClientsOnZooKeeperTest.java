package fjord.interop;

/** {@link ZooKeeperClientsTest} against Apache ZooKeeper 3.8, the reference. */
class ZooKeeperClientsOnZooKeeperTest extends ZooKeeperClientsTest {
  @Override
  String kind() {
    return "zookeeper";
  }
}
