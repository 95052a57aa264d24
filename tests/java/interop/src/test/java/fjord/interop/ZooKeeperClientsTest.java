package fjord.interop;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.nodes.PersistentNode;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.curator.retry.RetryNTimes;
import org.apache.curator.x.discovery.ServiceDiscovery;
import org.apache.curator.x.discovery.ServiceDiscoveryBuilder;
import org.apache.curator.x.discovery.ServiceInstance;
import org.apache.curator.x.discovery.ServiceProvider;
import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.WatchedEvent;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.Stat;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;

/**
 * The ZooKeeper 3.9.5 Java client and Curator 5.9.0 recipes. The same tests run against
 * fjord-coordinator ({@link ZooKeeperClientsOnFjordTest}) and, as the reference, against
 * Apache ZooKeeper 3.8 ({@link ZooKeeperClientsOnZooKeeperTest}).
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
abstract class ZooKeeperClientsTest {
  static final byte[] EMPTY = new byte[0];
  private Coordination server;
  private Path dir;
  private final List<AutoCloseable> open = new CopyOnWriteArrayList<>();

  abstract String kind();

  @BeforeAll
  void startServer() throws Exception {
    dir = Files.createTempDirectory("zk-clients-" + kind() + "-");
    server = Coordination.start(kind(), dir);
  }

  @AfterAll
  void stopServer() throws Exception {
    for (AutoCloseable c : open) {
      try {
        c.close();
      } catch (Exception e) {
        // closing what a test left open
      }
    }
    server.close();
    Proc.deleteTree(dir);
  }

  private static byte[] b(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  /** A ZooKeeper handle, connected. */
  private ZooKeeper zk(Watcher watcher) throws Exception {
    CountDownLatch connected = new CountDownLatch(1);
    ZooKeeper zk =
        new ZooKeeper(
            server.connectString(),
            6000,
            e -> {
              if (e.getState() == Watcher.Event.KeeperState.SyncConnected) {
                connected.countDown();
              }
              if (watcher != null) {
                watcher.process(e);
              }
            });
    open.add(zk::close);
    assertTrue(connected.await(30, TimeUnit.SECONDS), "connected to " + kind());
    return zk;
  }

  private CuratorFramework curator() {
    CuratorFramework c =
        CuratorFrameworkFactory.builder()
            .connectString(server.connectString())
            .sessionTimeoutMs(6000)
            .connectionTimeoutMs(10000)
            .retryPolicy(new ExponentialBackoffRetry(100, 5))
            .build();
    c.start();
    open.add(c::close);
    return c;
  }

  @Test
  void zookeeperClientCrudWatchesAndMulti() throws Exception {
    BlockingQueue<WatchedEvent> events = new LinkedBlockingQueue<>();
    ZooKeeper zk = zk(null);
    String root = "/crud";
    assertEquals(root, zk.create(root, b("r"), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT));
    String seq = zk.create(root + "/s-", EMPTY, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT_SEQUENTIAL);
    assertEquals(root + "/s-0000000000", seq);
    assertThrows(
        KeeperException.NodeExistsException.class,
        () -> zk.create(root, EMPTY, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT));
    assertThrows(
        KeeperException.NoNodeException.class,
        () -> zk.create("/missing/child", EMPTY, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT));

    Stat stat = new Stat();
    assertArrayEquals(b("r"), zk.getData(root, events::add, stat));
    assertEquals(0, stat.getVersion());
    Stat set = zk.setData(root, b("r2"), 0);
    assertEquals(1, set.getVersion());
    assertThrows(KeeperException.BadVersionException.class, () -> zk.setData(root, b("x"), 0));
    WatchedEvent changed = events.poll(10, TimeUnit.SECONDS);
    assertNotNull(changed);
    assertEquals(Watcher.Event.EventType.NodeDataChanged, changed.getType());
    assertEquals(root, changed.getPath());

    assertNull(zk.exists(root + "/later", events::add));
    zk.create(root + "/later", EMPTY, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
    assertEquals(Watcher.Event.EventType.NodeCreated, events.poll(10, TimeUnit.SECONDS).getType());
    zk.getChildren(root, events::add);
    zk.delete(root + "/later", -1);
    assertEquals(Watcher.Event.EventType.NodeChildrenChanged, events.poll(10, TimeUnit.SECONDS).getType());

    // multi: all or nothing.
    List<OpResult> ok =
        zk.multi(
            List.of(
                Op.create(root + "/m1", b("1"), ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
                Op.setData(root, b("r3"), 1),
                Op.check(root + "/m1", 0)));
    assertEquals(3, ok.size());
    KeeperException failed =
        assertThrows(
            KeeperException.class,
            () ->
                zk.multi(
                    List.of(
                        Op.create(root + "/m2", EMPTY, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT),
                        Op.delete(root + "/m1", 7))));
    assertEquals(KeeperException.Code.BADVERSION, failed.code());
    assertNull(zk.exists(root + "/m2", false), "the failed multi created nothing");

    // Ephemerals go with their session; getEphemerals lists them.
    ZooKeeper other = zk(null);
    other.create(root + "/eph", EMPTY, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.EPHEMERAL);
    assertEquals(List.of(root + "/eph"), other.getEphemerals(root));
    zk.exists(root + "/eph", events::add);
    other.close();
    WatchedEvent gone = events.poll(10, TimeUnit.SECONDS);
    assertEquals(Watcher.Event.EventType.NodeDeleted, gone.getType());

    // Persistent recursive watch (3.6+): every change below, without re-arming.
    BlockingQueue<WatchedEvent> recursive = new LinkedBlockingQueue<>();
    zk.addWatch(root, recursive::add, AddWatchMode.PERSISTENT_RECURSIVE);
    zk.create(root + "/m1/deep", EMPTY, ZooDefs.Ids.OPEN_ACL_UNSAFE, CreateMode.PERSISTENT);
    zk.setData(root + "/m1/deep", b("d"), -1);
    zk.delete(root + "/m1/deep", -1);
    List<String> seen = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      WatchedEvent e = recursive.poll(10, TimeUnit.SECONDS);
      assertNotNull(e, "recursive event " + i + " after " + seen);
      seen.add(e.getType() + " " + e.getPath());
    }
    assertEquals(
        List.of("NodeCreated /crud/m1/deep", "NodeDataChanged /crud/m1/deep", "NodeDeleted /crud/m1/deep"),
        seen);
    zk.sync(root);
    assertEquals(Set.of("s-0000000000", "m1"), Set.copyOf(zk.getChildren(root, false)));
  }

  @Test
  void interProcessMutexExcludes() throws Exception {
    List<CuratorFramework> clients = List.of(curator(), curator(), curator());
    AtomicInteger holders = new AtomicInteger();
    AtomicInteger maxHolders = new AtomicInteger();
    AtomicInteger turns = new AtomicInteger();
    ExecutorService pool = Executors.newFixedThreadPool(3);
    try {
      List<Future<?>> done = new ArrayList<>();
      for (CuratorFramework c : clients) {
        done.add(
            pool.submit(
                () -> {
                  InterProcessMutex lock = new InterProcessMutex(c, "/locks/a");
                  for (int i = 0; i < 5; i++) {
                    if (!lock.acquire(30, TimeUnit.SECONDS)) {
                      throw new AssertionError("lock not acquired");
                    }
                    try {
                      // Reentrant: the holder may take it again.
                      lock.acquire();
                      lock.release();
                      maxHolders.accumulateAndGet(holders.incrementAndGet(), Math::max);
                      Thread.sleep(5);
                      turns.incrementAndGet();
                      holders.decrementAndGet();
                    } finally {
                      lock.release();
                    }
                  }
                  return null;
                }));
      }
      for (Future<?> f : done) {
        f.get(120, TimeUnit.SECONDS);
      }
    } finally {
      pool.shutdownNow();
    }
    assertEquals(15, turns.get());
    assertEquals(1, maxHolders.get(), "never two holders at once");
    assertEquals(List.of(), clients.get(0).getChildren().forPath("/locks/a"), "no lock nodes left");
  }

  @Test
  void leaderLatchAndLeaderSelector() throws Exception {
    List<LeaderLatch> latches = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      LeaderLatch l = new LeaderLatch(curator(), "/latch", "latch-" + i);
      l.start();
      latches.add(l);
    }
    KafkaCluster.await(Duration.ofSeconds(30), "a leader", () -> latches.stream().filter(LeaderLatch::hasLeadership).count() == 1);
    LeaderLatch first = latches.stream().filter(LeaderLatch::hasLeadership).findFirst().orElseThrow();
    assertEquals(first.getId(), latches.get(0).getLeader().getId());
    first.close();
    latches.remove(first);
    KafkaCluster.await(Duration.ofSeconds(30), "a new leader", () -> latches.stream().filter(LeaderLatch::hasLeadership).count() == 1);
    for (LeaderLatch l : latches) {
      l.close();
    }

    // LeaderSelector: leadership passes around, one at a time.
    AtomicInteger leaders = new AtomicInteger();
    AtomicInteger overlap = new AtomicInteger();
    Collection<String> order = new CopyOnWriteArrayList<>();
    CountDownLatch turns = new CountDownLatch(6);
    List<LeaderSelector> selectors = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      String name = "selector-" + i;
      LeaderSelector s =
          new LeaderSelector(
              curator(),
              "/selector",
              new LeaderSelectorListenerAdapter() {
                @Override
                public void takeLeadership(CuratorFramework client) throws Exception {
                  if (leaders.incrementAndGet() > 1) {
                    overlap.incrementAndGet();
                  }
                  order.add(name);
                  Thread.sleep(50);
                  leaders.decrementAndGet();
                  turns.countDown();
                }
              });
      s.setId(name);
      s.autoRequeue();
      s.start();
      selectors.add(s);
    }
    assertTrue(turns.await(60, TimeUnit.SECONDS), "six turns: " + order);
    // A selector whose client connects late queues behind the others' requeued turns; give
    // every one the time to get its turn (bounded), rather than assume they all queue first.
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (Set.copyOf(order).size() < 3 && System.nanoTime() < deadline) {
      Thread.sleep(50);
    }
    for (LeaderSelector s : selectors) {
      s.close();
    }
    assertEquals(0, overlap.get(), "two leaders at once: " + order);
    assertEquals(3, Set.copyOf(order).size(), "every selector led: " + order);
  }

  @Test
  void distributedAtomicLongCountsEveryIncrement() throws Exception {
    ExecutorService pool = Executors.newFixedThreadPool(4);
    try {
      List<Future<Integer>> done = new ArrayList<>();
      for (int t = 0; t < 4; t++) {
        CuratorFramework c = curator();
        done.add(
            pool.submit(
                () -> {
                  DistributedAtomicLong counter = new DistributedAtomicLong(c, "/counter", new RetryNTimes(1000, 1));
                  int ok = 0;
                  for (int i = 0; i < 25; i++) {
                    AtomicValue<Long> v = counter.increment();
                    if (v.succeeded()) {
                      ok++;
                    }
                  }
                  return ok;
                }));
      }
      int succeeded = 0;
      for (Future<Integer> f : done) {
        succeeded += f.get(120, TimeUnit.SECONDS);
      }
      assertEquals(100, succeeded);
    } finally {
      pool.shutdownNow();
    }
    AtomicValue<Long> v = new DistributedAtomicLong(curator(), "/counter", new RetryNTimes(3, 10)).get();
    assertTrue(v.succeeded());
    assertEquals(100L, v.postValue());
  }

  @Test
  void curatorCacheFollowsATree() throws Exception {
    CuratorFramework c = curator();
    c.create().creatingParentContainersIfNeeded().forPath("/cache/a", b("1"));
    ConcurrentHashMap<String, String> mirror = new ConcurrentHashMap<>();
    CuratorCache cache = CuratorCache.build(c, "/cache");
    cache.listenable().addListener(
        CuratorCacheListener.builder()
            .forCreatesAndChanges((before, now) -> mirror.put(now.getPath(), new String(now.getData(), StandardCharsets.UTF_8)))
            .forDeletes(old -> mirror.remove(old.getPath()))
            .build());
    cache.start();
    open.add(cache::close);
    KafkaCluster.await(Duration.ofSeconds(30), "initial load", () -> "1".equals(mirror.get("/cache/a")));
    c.create().creatingParentContainersIfNeeded().forPath("/cache/b/deep/er", b("x"));
    c.setData().forPath("/cache/a", b("2"));
    c.delete().forPath("/cache/b/deep/er");
    c.create().forPath("/cache/c", b("3"));
    KafkaCluster.await(Duration.ofSeconds(30), "cache follows", () ->
        "2".equals(mirror.get("/cache/a")) && "3".equals(mirror.get("/cache/c"))
            && !mirror.containsKey("/cache/b/deep/er") && mirror.containsKey("/cache/b/deep"));
    assertEquals("2", new String(cache.get("/cache/a").orElseThrow().getData(), StandardCharsets.UTF_8));
    assertFalse(cache.get("/cache/b/deep/er").isPresent());
  }

  @Test
  void persistentNodeComesBack() throws Exception {
    CuratorFramework owner = curator();
    CuratorFramework other = curator();
    PersistentNode node = new PersistentNode(owner, CreateMode.EPHEMERAL, false, "/members/me", b("here"));
    node.start();
    open.add(node::close);
    assertTrue(node.waitForInitialCreate(30, TimeUnit.SECONDS));
    assertArrayEquals(b("here"), other.getData().forPath("/members/me"));
    // Someone deletes it: the recipe puts it back.
    other.delete().forPath("/members/me");
    KafkaCluster.await(Duration.ofSeconds(30), "node recreated", () -> {
      try {
        return other.checkExists().forPath("/members/me") != null;
      } catch (Exception e) {
        return false;
      }
    });
    node.setData(b("moved"));
    KafkaCluster.await(Duration.ofSeconds(30), "data updated", () -> {
      try {
        return new String(other.getData().forPath("/members/me"), StandardCharsets.UTF_8).equals("moved");
      } catch (Exception e) {
        return false;
      }
    });
    node.close();
    KafkaCluster.await(Duration.ofSeconds(30), "node gone with the recipe", () -> {
      try {
        return other.checkExists().forPath("/members/me") == null;
      } catch (Exception e) {
        return false;
      }
    });
  }

  @Test
  void serviceDiscoveryRegistersFindsAndForgets() throws Exception {
    CuratorFramework c1 = curator();
    CuratorFramework c2 = curator();
    ServiceDiscovery<Void> d1 = ServiceDiscoveryBuilder.builder(Void.class).client(c1).basePath("/services").build();
    ServiceDiscovery<Void> d2 = ServiceDiscoveryBuilder.builder(Void.class).client(c2).basePath("/services").build();
    d1.start();
    d2.start();
    ServiceInstance<Void> a = ServiceInstance.<Void>builder().name("api").address("10.0.0.1").port(8080).build();
    ServiceInstance<Void> b = ServiceInstance.<Void>builder().name("api").address("10.0.0.2").port(8080).build();
    d1.registerService(a);
    d2.registerService(b);
    CuratorFramework reader = curator();
    ServiceDiscovery<Void> query = ServiceDiscoveryBuilder.builder(Void.class).client(reader).basePath("/services").build();
    query.start();
    open.add(query::close);
    assertEquals(Set.of("api"), Set.copyOf(query.queryForNames()));
    assertEquals(Set.of(a.getId(), b.getId()), ids(query.queryForInstances("api")));
    ServiceProvider<Void> provider = query.serviceProviderBuilder().serviceName("api").build();
    provider.start();
    open.add(provider::close);
    assertNotNull(provider.getInstance());

    d1.unregisterService(a);
    assertEquals(Set.of(b.getId()), ids(query.queryForInstances("api")));
    // An instance's node is ephemeral: its client going away removes it.
    d2.close();
    c2.close();
    KafkaCluster.await(Duration.ofSeconds(30), "instance gone with its session", () -> {
      try {
        return query.queryForInstances("api").isEmpty();
      } catch (Exception e) {
        return false;
      }
    });
    d1.close();
  }

  private static Set<String> ids(Collection<ServiceInstance<Void>> instances) {
    Set<String> out = new java.util.HashSet<>();
    instances.forEach(i -> out.add(i.getId()));
    return out;
  }
}
