package io.bmtrain4j.examples.llama;

import static io.bmtrain4j.testing.TensorAsserts.assertClose;
import static io.bmtrain4j.testing.TensorAsserts.values;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.Bmt;
import io.bmtrain4j.examples.PythonReference;
import io.bmtrain4j.store.CheckpointException;
import io.bmtrain4j.store.SafeTensorsFile;
import io.bmtrain4j.testing.RanksAsThreads;
import io.bmtrain4j.zero.ActivationMode;
import io.bmtrain4j.zero.ShardedParameter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.javacpp.PointerScope;
import org.bytedeco.pytorch.NoGradGuard;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The LLaMA example against Hugging Face's own {@code LlamaForCausalLM}: checkpoints that
 * {@code save_pretrained} wrote load into it and give transformers' logits; what it saves,
 * {@code from_pretrained} loads with the same weights and logits; bad directories fail naming the
 * file and the key.
 */
class HuggingFaceLlamaTest {
  @TempDir Path dir;

  /** A tiny LLaMA with grouped-query attention written by transformers, and its logits on fixed tokens. */
  private Path reference(String dtype, boolean llama3Rope, String maxShardSize) throws Exception {
    return reference(dtype, llama3Rope, maxShardSize, false);
  }

  /** As above; {@code tied}: the LM head is the embedding, as in Llama 3.2 1B and 3B. */
  private Path reference(String dtype, boolean llama3Rope, String maxShardSize, boolean tied) throws Exception {
    Path model = dir.resolve("hf-" + dtype + (llama3Rope ? "-llama3" : "") + (tied ? "-tied" : ""));
    Path expected = dir.resolve(model.getFileName() + "-expected.safetensors");
    List<String> args = new java.util.ArrayList<>(List.of("make", model.toString(), expected.toString(), "--dtype", dtype,
        "--max-shard-size", maxShardSize));
    if (llama3Rope) {
      args.add("--llama3-rope");
    }
    if (tied) {
      args.add("--tied");
    }
    PythonReference.run("llama_reference.py", args.toArray(new String[0]));
    return model;
  }

  private static Map<String, Tensor> read(Path file) throws Exception {
    try (SafeTensorsFile.Reader r = new SafeTensorsFile.Reader(file)) {
      Map<String, Tensor> out = new LinkedHashMap<>();
      for (var e : r.header().entries().entrySet()) {
        Tensor t = torch.empty(e.getValue().shape(), new org.bytedeco.pytorch.TensorOptions().dtype(
            new org.bytedeco.pytorch.ScalarTypeOptional(io.bmtrain4j.store.SafeTensorsHeader.scalarType(e.getValue().dtype()))),
            new org.bytedeco.pytorch.MemoryFormatOptional());
        r.read(e.getKey(), 0, t.numel(), t);
        out.put(e.getKey(), t);
      }
      return out;
    }
  }

  private static DistributedLlama load(Path model) {
    LlamaConfig c = HuggingFaceLlama.readConfig(model, 64, torch.ScalarType.Float, "cpu");
    DistributedLlama net = new DistributedLlama(c, DistributedLlamaBlock::new);
    HuggingFaceLlama.load(net, model);
    return net;
  }

  private static float[] logits(DistributedLlama net, Tensor tokens) {
    try (NoGradGuard g = new NoGradGuard(); PointerScope scope = new PointerScope()) {
      return values(net.forward(tokens));
    }
  }

  @ParameterizedTest(name = "{0} file, llama3 rope {1}, world {2}")
  @CsvSource({"float32, false, 1", "float32, false, 2", "bfloat16, true, 2"})
  void checkpointsTransformersWroteGiveItsLogits(String dtype, boolean llama3Rope, int world) throws Exception {
    Path model = reference(dtype, llama3Rope, "40KB");
    assertTrue(Files.exists(model.resolve("model.safetensors.index.json")), "a sharded checkpoint: several files and an index");
    Map<String, Tensor> expected = read(dir.resolve(model.getFileName() + "-expected.safetensors"));
    float[] want = values(expected.get("logits"));
    List<float[]> got = RanksAsThreads.run(world, 0, Duration.ofSeconds(120), ctx -> logits(load(model), expected.get("tokens")));
    for (float[] g : got) {
      assertClose("logits against transformers (" + dtype + " checkpoint into an fp32 model)", want, g, 1e-5, 1e-5);
    }
  }

  /**
   * Parity of training, not only of inference: the sharded model's averaged gradients (two ranks,
   * each on half the batch; blocks recomputed with early stop; the head and loss chunked) equal
   * transformers' autograd on the whole batch.
   */
  @ParameterizedTest(name = "tied embeddings {0}, block 0 {1}, block 1 {2}")
  @CsvSource({"false, RECOMPUTE, RECOMPUTE", "true, RECOMPUTE, RECOMPUTE", "false, SELECTIVE, KEEP"})
  void shardedGradientsEqualTransformersAutograd(boolean tied, ActivationMode first, ActivationMode second) throws Exception {
    Path model = reference("float32", true, "40KB", tied);
    Path expectedFile = dir.resolve(model.getFileName() + "-expected.safetensors");
    Path reference = dir.resolve("gradients.safetensors");
    PythonReference.run("llama_reference.py", "gradients", model.toString(), expectedFile.toString(), reference.toString());
    Map<String, Tensor> want = read(reference);
    Tensor tokens = read(expectedFile).get("tokens");
    List<Object[]> got = RanksAsThreads.run(2, 0, Duration.ofSeconds(120), ctx -> {
      DistributedLlama net = load(model);
      // Selective: the attention part's graph is kept, the repeated keys and values recomputed.
      Bmt.planActivations(net, Map.of("layers.0", first, "layers.1", second));
      Tensor mine = tokens.narrow(0, ctx.rank(), 1);
      // The chunked head and loss (chunks of 5 tokens here), not the whole logits.
      net.lossChunkRows = 5;
      Tensor loss = net.loss(mine, mine.add(new Scalar(1)).remainder(new Scalar(96)));
      loss.backward();
      double mean = Bmt.meanLoss(loss);
      Map<String, float[]> grads = new LinkedHashMap<>();
      Bmt.gatherGradients(net).forEach((k, v) -> grads.put(HuggingFaceLlama.keyOf(k), values(v)));
      return new Object[] {mean, grads};
    });
    assertEquals(want.get("loss").item_double(), (double) got.get(0)[0], 1e-5, "loss");
    @SuppressWarnings("unchecked")
    Map<String, float[]> grads = (Map<String, float[]>) got.get(0)[1];
    // A tied head is the embedding: its gradient is the embedding's, both uses summed.
    assertEquals(tied ? 20 : 21, grads.size(), grads.keySet().toString());
    for (Map.Entry<String, float[]> e : grads.entrySet()) {
      assertClose("gradient of " + e.getKey(), values(want.get(e.getKey())), e.getValue(), 1e-4, 1e-6);
    }
  }

  @ParameterizedTest(name = "tied embeddings {0}")
  @CsvSource({"false", "true"})
  void whatItTrainsAndSavesTransformersLoadsWithTheSameWeightsAndLogits(boolean tied) throws Exception {
    Path model = reference("float32", true, "40KB", tied);
    Tensor tokens = read(dir.resolve(model.getFileName() + "-expected.safetensors")).get("tokens");
    Path saved = dir.resolve("saved");
    Path java = dir.resolve("java.safetensors");
    RanksAsThreads.run(2, 0, Duration.ofSeconds(120), ctx -> {
      DistributedLlama net = load(model);
      List<ShardedParameter> params = Bmt.parameters(net);
      Tensor targets = tokens.add(new Scalar(1)).remainder(new Scalar(96));
      for (int step = 0; step < 3; step++) {
        try (PointerScope scope = new PointerScope()) {
          Tensor logits = net.forward(tokens.narrow(0, ctx.rank(), 1));
          torch.cross_entropy_loss(logits.reshape(-1, 96), targets.narrow(0, ctx.rank(), 1).reshape(-1)).backward();
          try (NoGradGuard g = new NoGradGuard()) {
            for (ShardedParameter p : params) {
              Tensor grad = p.grad();
              if (grad != null) {
                p.local().sub_(grad.mul(new Scalar(0.05)));
              }
              p.zeroBlockGradients();
            }
          }
        }
      }
      HuggingFaceLlama.save(net, net.config(), saved, 30_000);
      Map<String, Tensor> whole = new LinkedHashMap<>();
      Bmt.gatherParameters(net).forEach((k, v) -> whole.put(HuggingFaceLlama.keyOf(k), v));
      try (NoGradGuard g = new NoGradGuard()) {
        whole.put("tokens", tokens);
        whole.put("logits", net.forward(tokens).contiguous());
      }
      if (ctx.rank() == 0) {
        SafeTensorsFile.write(java, whole, Map.of());
      }
      return null;
    });
    try (var files = Files.list(saved)) {
      assertTrue(files.filter(f -> f.getFileName().toString().startsWith("model-")).count() > 1, "sharded at the size limit");
    }
    String out = PythonReference.run("llama_reference.py", "check", saved.toString(), java.toString());
    assertTrue(out.contains("OK " + (tied ? 20 : 21) + " weights equal"), out);
    assertTrue(Files.readString(saved.resolve("config.json")).contains("\"tie_word_embeddings\" : " + tied), "config.json ties as the source");
  }

  @Test
  void aMissingKeyAnUnexpectedKeyAndAWrongShapeNameTheFileAndTheKey() throws Exception {
    Path model = reference("float32", false, "40KB");
    Path index = model.resolve("model.safetensors.index.json");
    String original = Files.readString(index);

    // An index entry removed: the tensor is missing.
    Files.writeString(index, original.replace("\"model.norm.weight\"", "\"model.norm.renamed\""));
    String missing = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx ->
        assertThrows(CheckpointException.class, () -> load(model)).getMessage()).get(0);
    assertTrue(missing.contains("'model.norm.weight'") && missing.contains(model.toString()), missing);

    // A tensor the model has no parameter for.
    Files.writeString(index, original.replace("\"model.norm.weight\"", "\"model.norm.weight\": \"" + fileOf(original, "model.norm.weight")
        + "\", \"model.extra.weight\""));
    String unexpected = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx ->
        assertThrows(CheckpointException.class, () -> load(model)).getMessage()).get(0);
    assertTrue(unexpected.contains("'model.extra.weight' in model-"), unexpected);
    Files.writeString(index, original);

    // A config of another size: the first tensor of the wrong shape is named with its file.
    Path config = model.resolve("config.json");
    Files.writeString(config, Files.readString(config).replace("\"intermediate_size\": 172", "\"intermediate_size\": 160"));
    String shape = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx ->
        assertThrows(CheckpointException.class, () -> load(model)).getMessage()).get(0);
    assertTrue(shape.contains("'model.layers.0.mlp.gate_proj.weight' in ") && shape.contains("model-0000")
        && shape.contains("[172, 64]"), shape);
  }

  @Test
  void aSaveRankZeroCannotWriteFailsEveryRankByName() throws Exception {
    Path blocked = dir.resolve("a-file");
    Files.writeString(blocked, "not a directory");
    LlamaConfig c = LlamaConfig.preset("tiny", 96, 16, torch.ScalarType.Float, "cpu");
    long start = System.nanoTime();
    List<String> messages = RanksAsThreads.run(2, 0, Duration.ofSeconds(60), ctx -> {
      DistributedLlama net = new DistributedLlama(c, DistributedLlamaBlock::new);
      Bmt.initParameters(net);
      return assertThrows(CheckpointException.class, () -> HuggingFaceLlama.save(net, c, blocked.resolve("out"), 30_000))
          .getMessage();
    });
    for (String m : messages) {
      assertTrue(m.contains(blocked.resolve("out").toString()), m);
    }
    assertTrue(System.nanoTime() - start < 30_000_000_000L, "no rank waits for a collective or a timeout");
  }

  /** The file the index gives for {@code key}. */
  private static String fileOf(String index, String key) {
    int at = index.indexOf("\"" + key + "\"");
    int start = index.indexOf('"', index.indexOf(':', at)) + 1;
    return index.substring(start, index.indexOf('"', start));
  }

  @Test
  void huggingFaceNamesCoverEveryParameter() {
    LlamaConfig c = LlamaConfig.preset("tiny", 96, 16, torch.ScalarType.Float, "cpu");
    List<String> names = RanksAsThreads.run(1, 0, Duration.ofSeconds(60), ctx -> {
      DistributedLlama net = new DistributedLlama(c, DistributedLlamaBlock::new);
      return Bmt.parameters(net).stream().map(p -> HuggingFaceLlama.keyOf(p.name())).toList();
    }).get(0);
    assertEquals(names.size(), names.stream().distinct().count(), "one name each: " + names);
    assertTrue(names.contains("model.layers.1.mlp.down_proj.weight") && names.contains("lm_head.weight"), names.toString());
    assertEquals(3 + 9 * c.layers(), names.size());
  }
}
