package fjord.interop;

/** {@link ZooKeeperClientsTest} against fjord-coordinator. */
class ZooKeeperClientsOnFjordTest extends ZooKeeperClientsTest {
  @Override
  String kind() {
    return "fjord";
  }
}
