package io.bmtrain4j.dist;

/** Reductions the collectives support. AVG is SUM followed by a division by the world size. */
public enum ReduceOperation {
  SUM,
  AVG,
  MAX,
  MIN
}
