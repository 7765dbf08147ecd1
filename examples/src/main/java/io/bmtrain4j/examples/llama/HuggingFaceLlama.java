package io.bmtrain4j.examples.llama;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.bmtrain4j.nn.RotaryEmbedding;
import io.bmtrain4j.store.CheckpointException;
import io.bmtrain4j.store.HuggingFaceCheckpoint;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bytedeco.pytorch.global.torch;

/**
 * The LLaMA example and Hugging Face's {@code LlamaForCausalLM}: parameter names, {@code config.json},
 * and loading or saving a model directory that {@code transformers} reads and writes.
 */
public final class HuggingFaceLlama {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Pattern BLOCK_KEY = Pattern.compile("layers\\.(\\d+)\\.(\\w+)");
  private static final Map<String, String> BLOCK_FIELDS = Map.of(
      "attnNorm", "input_layernorm.weight",
      "wq", "self_attn.q_proj.weight",
      "wk", "self_attn.k_proj.weight",
      "wv", "self_attn.v_proj.weight",
      "wo", "self_attn.o_proj.weight",
      "mlpNorm", "post_attention_layernorm.weight",
      "wGate", "mlp.gate_proj.weight",
      "wUp", "mlp.up_proj.weight",
      "wDown", "mlp.down_proj.weight");

  /** The default size limit of one saved file, as {@code save_pretrained}'s {@code max_shard_size} (5 GB). */
  public static final long DEFAULT_MAX_FILE_BYTES = 5_000_000_000L;

  private HuggingFaceLlama() {}

  /** The Hugging Face name of one of {@link Llama}'s parameters ({@code layers.3.wq} -> {@code model.layers.3.self_attn.q_proj.weight}). */
  public static String keyOf(String parameter) {
    switch (parameter) {
      case "embed":
        return "model.embed_tokens.weight";
      case "norm":
        return "model.norm.weight";
      case "head":
        return "lm_head.weight";
      default:
        Matcher m = BLOCK_KEY.matcher(parameter);
        String field = m.matches() ? BLOCK_FIELDS.get(m.group(2)) : null;
        if (field == null) {
          throw new IllegalArgumentException("'" + parameter + "' is not a parameter of the LLaMA example");
        }
        return "model.layers." + m.group(1) + "." + field;
    }
  }

  /**
   * The model's shape from {@code dir/config.json}, with the run's sequence length, dtype and
   * device. Refuses what the example does not implement (biases, a head dimension other than
   * hidden_size / heads, other rope types), naming the field.
   */
  public static LlamaConfig readConfig(Path dir, int maxSeq, torch.ScalarType dtype, String device) {
    Path file = dir.resolve("config.json");
    JsonNode c;
    try {
      c = JSON.readTree(file.toFile());
    } catch (IOException e) {
      throw new CheckpointException("cannot read " + file + ": " + e.getMessage() + " (a Hugging Face model directory has one)", e);
    }
    String type = c.path("model_type").asText("");
    if (!type.equals("llama")) {
      throw new CheckpointException(file + " describes a '" + type + "' model; the LLaMA example loads model_type llama");
    }
    for (String bias : new String[] {"attention_bias", "mlp_bias"}) {
      if (c.path(bias).asBoolean(false)) {
        throw new CheckpointException(file + " has " + bias + " true; the LLaMA example has no biases");
      }
    }
    int hidden = required(c, file, "hidden_size");
    int heads = required(c, file, "num_attention_heads");
    if (c.hasNonNull("head_dim") && c.get("head_dim").asInt() * heads != hidden) {
      throw new CheckpointException(file + " has head_dim " + c.get("head_dim").asInt() + ", not hidden_size / num_attention_heads = "
          + hidden / heads + "; the LLaMA example supports only the latter");
    }
    // transformers 5 writes rope_parameters; earlier versions rope_theta and rope_scaling.
    JsonNode rope = c.hasNonNull("rope_parameters") ? c.get("rope_parameters") : c.path("rope_scaling");
    double theta = c.hasNonNull("rope_theta") ? c.get("rope_theta").asDouble() : rope.path("rope_theta").asDouble(10000);
    String ropeType = rope.path("rope_type").asText(rope.path("type").asText("default"));
    RotaryEmbedding.Llama3Scaling scaling = switch (ropeType) {
      case "default" -> null;
      case "llama3" -> new RotaryEmbedding.Llama3Scaling(rope.path("factor").asDouble(), rope.path("low_freq_factor").asDouble(),
          rope.path("high_freq_factor").asDouble(), rope.path("original_max_position_embeddings").asLong());
      default -> throw new CheckpointException(file + " uses rope type '" + ropeType + "'; the LLaMA example supports default and llama3");
    };
    return new LlamaConfig(required(c, file, "vocab_size"), hidden, required(c, file, "num_hidden_layers"), heads,
        c.path("num_key_value_heads").asInt(heads), required(c, file, "intermediate_size"), theta, scaling,
        c.path("rms_norm_eps").asDouble(1e-6), maxSeq, dtype, device, c.path("tie_word_embeddings").asBoolean(false));
  }

  private static int required(JsonNode c, Path file, String field) {
    if (!c.path(field).canConvertToInt() || c.path(field).asInt() < 1) {
      throw new CheckpointException(file + " has no positive whole number '" + field + "'");
    }
    return c.get(field).asInt();
  }

  private static String dtypeName(LlamaConfig c) {
    return c.dtype().value == torch.ScalarType.BFloat16.value ? "bfloat16"
        : c.dtype().value == torch.ScalarType.Half.value ? "float16" : "float32";
  }

  /**
   * Loads the model directory {@code dir} into {@code model} (each rank reads only its own slices).
   * A model read with {@link #readConfig} ties its head as the directory does: a tied checkpoint
   * has no {@code lm_head.weight}, and the model has no head parameter to fill.
   */
  public static void load(Object model, Path dir) {
    HuggingFaceCheckpoint.load(model, dir, HuggingFaceLlama::keyOf, true);
  }

  /**
   * Saves {@code model} into {@code dir} as {@code transformers} would (a collective): the
   * weights in files of at most {@code maxFileBytes}, with an index when there are several, and
   * {@code config.json}. Tokenizer files are not touched.
   */
  public static void save(Object model, LlamaConfig c, Path dir, long maxFileBytes) {
    save(model, c, dir, maxFileBytes, null);
  }

  /**
   * As {@link #save(Object, LlamaConfig, Path, long)}, for a model fine-tuned from {@code source}
   * (a model directory, or null): its {@code config.json} is kept, context length and token ids
   * included, with only the dtype and whether the head is tied rewritten.
   */
  public static void save(Object model, LlamaConfig c, Path dir, long maxFileBytes, Path source) {
    HuggingFaceCheckpoint.save(model, dir, HuggingFaceLlama::keyOf, maxFileBytes);
    // Rank 0 writes config.json; every rank learns how that went, so none waits for a failed one.
    io.bmtrain4j.dist.StoreRound outcome = io.bmtrain4j.Bmt.context().storeRound("hf-config");
    if (io.bmtrain4j.Bmt.rank() == 0) {
      try {
        writeConfig(c, dir, source);
        outcome.publish(0, "ok");
      } catch (RuntimeException e) {
        outcome.publish(0, "error: " + e.getMessage());
        throw e;
      }
    } else if (!outcome.get(0).equals("ok")) {
      throw new CheckpointException(outcome.get(0).substring("error: ".length()));
    }
  }

  static void writeConfig(LlamaConfig c, Path dir, Path source) {
    if (source != null && Files.isRegularFile(source.resolve("config.json"))) {
      try {
        ObjectNode o = (ObjectNode) JSON.readTree(source.resolve("config.json").toFile());
        o.put("tie_word_embeddings", c.tiedEmbeddings());
        o.put("torch_dtype", dtypeName(c));
        if (o.has("dtype")) {
          o.put("dtype", dtypeName(c));
        }
        Files.write(dir.resolve("config.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(o));
        return;
      } catch (IOException e) {
        throw new UncheckedIOException("cannot copy " + source.resolve("config.json") + " to " + dir, e);
      }
    }
    ObjectNode o = JSON.createObjectNode();
    o.putArray("architectures").add("LlamaForCausalLM");
    o.put("model_type", "llama");
    o.put("vocab_size", c.vocab());
    o.put("hidden_size", c.dModel());
    o.put("intermediate_size", c.dFf());
    o.put("num_hidden_layers", c.layers());
    o.put("num_attention_heads", c.heads());
    o.put("num_key_value_heads", c.kvHeads());
    o.put("head_dim", c.headDim());
    o.put("hidden_act", "silu");
    o.put("max_position_embeddings", c.maxSeq());
    o.put("rms_norm_eps", c.rmsNormEps());
    o.put("rope_theta", c.ropeTheta());
    if (c.ropeScaling() == null) {
      o.putNull("rope_scaling");
    } else {
      ObjectNode s = o.putObject("rope_scaling");
      s.put("rope_type", "llama3");
      s.put("factor", c.ropeScaling().factor());
      s.put("low_freq_factor", c.ropeScaling().lowFreqFactor());
      s.put("high_freq_factor", c.ropeScaling().highFreqFactor());
      s.put("original_max_position_embeddings", c.ropeScaling().originalMaxPositions());
    }
    o.put("attention_bias", false);
    o.put("mlp_bias", false);
    o.put("tie_word_embeddings", c.tiedEmbeddings());
    o.put("torch_dtype", dtypeName(c));
    try {
      Files.write(dir.resolve("config.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(o));
    } catch (IOException e) {
      throw new UncheckedIOException("cannot write " + dir.resolve("config.json"), e);
    }
  }
}
