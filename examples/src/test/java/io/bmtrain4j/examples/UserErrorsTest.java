package io.bmtrain4j.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;

import io.bmtrain4j.store.CheckpointException;
import org.junit.jupiter.api.Test;

/** Which errors the mains report as one line, including those that crossed libtorch's backward as text. */
class UserErrorsTest {
  @Test
  void aUserErrorInTheCauseChainIsFound() {
    CheckpointException cause = new CheckpointException("latest is empty");
    assertSame(cause, UserErrors.userError(new RuntimeException("wrapped", new IllegalStateException("again", cause))));
  }

  @Test
  void aUserErrorThatCrossedABackwardHookAsTextIsFound() {
    // As seen on a GPU machine when a peer died mid-step: the hook's exception comes back as text.
    RuntimeException fromLibtorch = new RuntimeException("java.lang.IllegalStateException: backward of a sharded block failed:"
        + " io.bmtrain4j.dist.CollectiveException: all-gather failed on rank 1 of 2 (gloo, timeout 300 s): Connection closed\n"
        + "Exception raised from ...");
    assertEquals("all-gather failed on rank 1 of 2 (gloo, timeout 300 s): Connection closed",
        UserErrors.userError(fromLibtorch).getMessage());
  }

  @Test
  void anythingElseIsABugAndKeepsItsTrace() {
    assertNull(UserErrors.userError(new IllegalStateException("a broken invariant")));
    assertNull(UserErrors.userError(new NullPointerException()));
  }
}
