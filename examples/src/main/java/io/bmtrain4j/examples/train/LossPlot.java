package io.bmtrain4j.examples.train;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.jfree.chart.ChartFactory;
import org.jfree.chart.ChartUtils;
import org.jfree.chart.JFreeChart;
import org.jfree.chart.plot.PlotOrientation;
import org.jfree.data.xy.XYSeries;
import org.jfree.data.xy.XYSeriesCollection;

/** The loss curve as a PNG, drawn with JFreeChart (headless). */
public final class LossPlot {
  private LossPlot() {}

  /** {@code losses[i]} is the loss of step {@code firstStep + i}. */
  public static void write(Path png, int firstStep, List<Double> losses, String title) throws IOException {
    System.setProperty("java.awt.headless", "true");
    XYSeries series = new XYSeries("training loss (mean over ranks)");
    for (int i = 0; i < losses.size(); i++) {
      series.add(firstStep + i, losses.get(i));
    }
    JFreeChart chart = ChartFactory.createXYLineChart(title, "step", "loss",
        new XYSeriesCollection(series), PlotOrientation.VERTICAL, true, false, false);
    ChartUtils.saveChartAsPNG(png.toFile(), chart, 900, 500);
  }
}
