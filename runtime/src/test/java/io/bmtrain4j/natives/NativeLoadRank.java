package io.bmtrain4j.natives;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.InitOptions;
import io.bmtrain4j.dist.ReduceOperation;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;

/** One rank of {@link NativeLoadingTest}: joins the job (loading libtorch first), then all-reduces its rank + 1. */
public final class NativeLoadRank {
  private NativeLoadRank() {}

  public static void main(String[] args) {
    Bmt.initDistributed(InitOptions.builder().seed(0).build());
    Tensor t = torch.ones(1).mul_(new org.bytedeco.pytorch.Scalar((double) (Bmt.rank() + 1)));
    Bmt.context().communicator().allReduce(t, ReduceOperation.SUM).await();
    System.out.println("rank " + Bmt.rank() + " sum=" + (long) t.item_float());
    Bmt.context().close();
  }
}
