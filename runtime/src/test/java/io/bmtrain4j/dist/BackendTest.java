package io.bmtrain4j.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.InitOptions;
import org.junit.jupiter.api.Test;

class BackendTest {
  @Test
  void namesParseInAnyCaseAndAnythingElseNamesTheChoices() {
    assertEquals(Backend.NCCL, Backend.parse("nccl"));
    assertEquals(Backend.GLOO, Backend.parse(" GLOO "));
    assertEquals("nccl", Backend.NCCL.toString());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Backend.parse("mpi"));
    assertTrue(e.getMessage().contains("gloo or nccl, got mpi"), e.getMessage());
    assertEquals(Backend.GLOO, InitOptions.builder().build().backend(), "Gloo by default");
    assertEquals(Backend.NCCL, InitOptions.builder().backend("nccl").build().backend());
  }
}
