package io.bmtrain4j.examples.llama;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.bmtrain4j.examples.PythonReference;
import io.bmtrain4j.examples.Train;
import io.bmtrain4j.examples.data.Prepare;
import io.bmtrain4j.launch.LaunchSpec;
import io.bmtrain4j.launch.LocalLauncher;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * What a user does with a published model: point the LLaMA example at a Hugging Face model
 * directory and a text corpus, tokenize the corpus with the model's tokenizer, fine-tune on two
 * ranks, and save a directory that {@code transformers} loads, tokenizer included.
 */
class FineTuneTest {
  @TempDir Path dir;

  @Test
  void fineTunesAHuggingFaceModelOnItsTokenizedCorpusAndSavesWhatTransformersLoads() throws Exception {
    Path hf = dir.resolve("published");
    Files.createDirectories(hf);
    StringBuilder text = new StringBuilder();
    String[] words = {"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "runs", "home", "again"};
    for (int i = 0; i < 400; i++) {
      text.append(words[i % words.length]).append(i % 7 == 6 ? ".\n" : " ");
    }
    Path corpus = dir.resolve("corpus.txt");
    Files.writeString(corpus, text);
    PythonReference.run("tokenizer_reference.py", "make", hf.toString(), corpus.toString(), dir.resolve("ids.json").toString());
    PythonReference.run("llama_reference.py", "make", hf.toString(), dir.resolve("expected.safetensors").toString(),
        "--vocab", "400", "--max-shard-size", "100KB");

    Path tokens = dir.resolve("corpus.tokens");
    assertEquals(0, new picocli.CommandLine(new Prepare()).execute("--tokenizer", hf.toString(), "--input", corpus.toString(),
        "--output", tokens.toString()));

    Path tuned = dir.resolve("tuned");
    List<String> lines = Collections.synchronizedList(new ArrayList<>());
    int code = LocalLauncher.launch(LaunchSpec.of(2, Train.class.getName(), new String[] {
        "--arch", "llama", "--hf-model", hf.toString(), "--data", "tokens:" + tokens, "--seq", "16", "--steps", "30",
        "--lr", "3e-3", "--checkpoint-dir", dir.resolve("ckpt").toString(), "--save-hf", tuned.toString()})
        .withOutput(lines::add));
    String all = String.join("\n", lines);
    assertEquals(0, code, all);
    assertTrue(all.contains("LLaMA from " + hf), all);
    Matcher m = Pattern.compile("\\[rank 0\\] loss ([0-9.]+) -> ([0-9.]+) over steps 0..29").matcher(all);
    assertTrue(m.find(), all);
    assertTrue(Double.parseDouble(m.group(2)) < Double.parseDouble(m.group(1)) - 0.5, "fine-tuning lowers the loss: " + m.group());
    assertTrue(all.contains("saved the model as a Hugging Face directory in " + tuned), all);
    assertTrue(Files.isRegularFile(tuned.resolve("tokenizer.json")), "the tokenizer travels with the model");

    String out = PythonReference.run("llama_reference.py", "loads", tuned.toString(), hf.toString());
    assertTrue(out.contains("OK loads: 21 of 21 weights changed"), out);
  }
}
