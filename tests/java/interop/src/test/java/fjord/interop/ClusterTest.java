package fjord.interop;

import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * A test class that shares one Fjord cluster between its tests (starting a cluster per
 * test would cost more than the tests on two cores). A failure prints every process's
 * log tail and keeps the temp dir.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class ClusterTest {
  KafkaCluster cluster;

  int brokers() {
    return 3;
  }

  Map<String, String> options() {
    return Map.of();
  }

  @BeforeAll
  void startCluster() throws Exception {
    cluster = new KafkaCluster(brokers(), options());
  }

  @AfterAll
  void stopCluster() throws Exception {
    if (cluster == null) {
      return;
    }
    if (failures.any()) {
      System.err.println("cluster files kept in " + cluster.dir + "\n" + cluster.tails());
    }
    cluster.close();
    if (!failures.any()) {
      cluster.delete();
    }
  }

  @RegisterExtension final Failures failures = new Failures();
}
