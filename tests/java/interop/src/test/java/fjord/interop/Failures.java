package fjord.interop;

import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.TestWatcher;

/**
 * Remembers whether any test of a class failed, so that its {@code @AfterAll} prints the
 * processes' log tails and keeps the temp dir. Register with {@code @RegisterExtension}.
 */
final class Failures implements TestWatcher {
  private volatile boolean any;

  @Override
  public void testFailed(ExtensionContext context, Throwable cause) {
    any = true;
  }

  boolean any() {
    return any;
  }
}
