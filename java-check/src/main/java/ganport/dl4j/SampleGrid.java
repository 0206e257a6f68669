package ganport.dl4j;

import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import javax.imageio.ImageIO;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * A JVM user's first step: load a ganport generator and write a PNG grid of its samples, through DL4J (a DL4J-ready
 * HDF5 file) or ONNX Runtime for Java (an ONNX file); the same seed gives the same noise, so the same digits.
 *
 * <p>Usage: {@code SampleGrid GENERATOR.h5|GENERATOR.onnx OUT.png [N] [SEED] [LABELS]}; N defaults to 16, SEED to 0;
 * gray or RGB images of any size (NHWC) make a gray or colour grid. A conditional
 * generator (inputs {@code z} and {@code label}) takes LABELS as {@code 7}, {@code 3,5,8} or {@code 0-9}, one
 * grid row per label with N samples each; without LABELS it samples 0..9. Exit 0 on success, 1 on failure, 2 on bad
 * arguments.
 */
public final class SampleGrid {

    private SampleGrid() {
    }

    public static void main(String[] args) {
        if (args.length < 2 || args.length > 5) {
            System.err.println("usage: SampleGrid GENERATOR.h5|GENERATOR.onnx OUT.png [N] [SEED] [LABELS]");
            System.exit(2);
        }
        try {
            int n = args.length > 2 ? Integer.parseInt(args[2]) : 16;
            long seed = args.length > 3 ? Long.parseLong(args[3]) : 0;
            List<Integer> labels = args.length > 4 ? parseLabels(args[4]) : null;
            if (n < 1 || n > 1024) {
                throw new IllegalArgumentException("N must be between 1 and 1024, got " + n);
            }
            int[] shape = write(new File(args[0]), new File(args[1]), n, seed, labels);
            System.out.printf("wrote %s: %d x %d samples of %d x %d from %s%n", args[1], shape[0], shape[1],
                    shape[2], shape[3], args[0].endsWith(".onnx") ? "ONNX Runtime" : "DL4J");
        } catch (IllegalArgumentException error) {
            System.err.println("error: " + error.getMessage());
            System.exit(2);
        } catch (Exception error) {
            System.err.println("error: " + error.getMessage());
            System.exit(1);
        }
    }

    static List<Integer> parseLabels(String text) {
        List<Integer> labels = new ArrayList<>();
        for (String part : text.split(",")) {
            String[] range = part.trim().split("-");
            int first = Integer.parseInt(range[0].trim());
            int last = range.length > 1 ? Integer.parseInt(range[1].trim()) : first;
            for (int label = first; label <= last; label++) {
                labels.add(label);
            }
        }
        if (labels.isEmpty()) {
            throw new IllegalArgumentException("LABELS names no label: " + text);
        }
        return labels;
    }

    /** Sample and write the grid through the runtime the file's suffix names (DL4J for .h5, ONNX Runtime for
     * .onnx); returns {rows, columns, height, width}. */
    public static int[] write(File model, File png, int n, long seed, List<Integer> labels) throws Exception {
        GanModel.Runtime runtime = model.getName().endsWith(GanModel.Runtime.ONNX.suffix)
                ? GanModel.Runtime.ONNX : GanModel.Runtime.DL4J;
        try (GanModel generator = runtime.load(model)) {
            return write(generator, model, png, n, seed, labels);
        }
    }

    static int[] write(GanModel generator, File model, File png, int n, long seed, List<Integer> labels)
            throws Exception {
        Map<String, Integer> inputs = generator.inputSizes();
        if (!inputs.containsKey("z")) {
            throw new IllegalArgumentException(model + " has no noise input `z` (inputs " + inputs.keySet()
                    + "); pass a generator exported by ganport");
        }
        boolean conditional = inputs.containsKey("label");
        List<Integer> rowsLabels = conditional ? (labels == null ? parseLabels("0-9") : labels) : null;
        if (!conditional && labels != null) {
            throw new IllegalArgumentException(model + " is not a conditional generator (no `label` input)");
        }
        int rows = conditional ? rowsLabels.size() : (int) Math.ceil(n / Math.ceil(Math.sqrt(n)));
        int columns = conditional ? n : (int) Math.ceil(Math.sqrt(n));
        int count = conditional ? rows * columns : n;

        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        Nd4j.getRandom().setSeed(seed);
        Map<String, INDArray> feeds = new LinkedHashMap<>();
        feeds.put("z", Nd4j.randn(DataType.FLOAT, count, inputs.get("z")));
        if (conditional) {
            INDArray label = Nd4j.create(DataType.FLOAT, count, 1);
            for (int i = 0; i < count; i++) {
                label.putScalar(i, 0, rowsLabels.get(i / columns));
            }
            feeds.put("label", label);
        }
        INDArray images = generator.outputs(feeds)[0];
        int[] image = imageShape(images, count);
        int height = image[0], width = image[1], channels = image[2];
        float[] pixels = images.castTo(DataType.FLOAT).dup('c').data().asFloat();
        BufferedImage grid = new BufferedImage(columns * width, rows * height,
                channels == 1 ? BufferedImage.TYPE_BYTE_GRAY : BufferedImage.TYPE_INT_RGB);
        for (int i = 0; i < count; i++) {
            for (int y = 0; y < height; y++) {
                for (int x = 0; x < width; x++) {
                    int offset = ((i * height + y) * width + x) * channels;  // NHWC, as Keras and the exports hold it
                    int left = (i % columns) * width + x, top = (i / columns) * height + y;
                    for (int c = 0; c < channels; c++) {
                        int level = Math.max(0, Math.min(255, Math.round((pixels[offset + c] + 1) * 127.5f)));
                        grid.getRaster().setSample(left, top, c, level);
                    }
                }
            }
        }
        File parent = png.getAbsoluteFile().getParentFile();
        File temporary = File.createTempFile("." + png.getName(), ".tmp", parent);
        try {
            if (!ImageIO.write(grid, "png", temporary)) {
                throw new IOException("no PNG writer");
            }
            Files.move(temporary.toPath(), png.toPath(), StandardCopyOption.REPLACE_EXISTING,
                    StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(temporary.toPath());
        }
        return new int[] {rows, columns, height, width};
    }

    /** {height, width, channels} of each of {@code count} images: from an [N, H, W, C] output, or from a flat one
     * (DL4J drops a trailing Reshape) as a square of 1 or 3 channels, which a length never allows both of. */
    static int[] imageShape(INDArray images, int count) {
        long[] shape = images.shape();
        if (shape.length == 4 && (shape[3] == 1 || shape[3] == 3)) {
            return new int[] {(int) shape[1], (int) shape[2], (int) shape[3]};
        }
        long perImage = images.length() / count;
        for (int channels : new int[] {1, 3}) {
            long side = Math.round(Math.sqrt((double) perImage / channels));
            if (side * side * channels == perImage) {
                return new int[] {(int) side, (int) side, channels};
            }
        }
        throw new IllegalStateException("outputs of shape " + java.util.Arrays.toString(shape)
                + " are not images of 1 or 3 channels (NHWC, or flat and square)");
    }
}
