package ganport.dl4j;

import java.io.File;
import java.nio.FloatBuffer;
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.shade.jackson.databind.ObjectMapper;
import org.nd4j.shade.jackson.databind.SerializationFeature;

/**
 * How fast ganport's models run on the JVM: samples/s and latency per batch size, through DL4J (a generator's HDF5
 * file, workspaces enabled, as DL4J's performance guide recommends for repeated inference; threads from
 * OMP_NUM_THREADS) and ONNX Runtime for Java (ONNX files, generators' and critics': one session, one intra-op thread
 * per core, tensors made from float arrays per call as a service would).
 *
 * <p>A plain harness rather than JMH: each call takes 0.1 to 500 ms, far above the timer's and JIT noise's scale, and
 * the numbers are read beside Python's, measured the same way (warm-up, then the median of timed calls).
 *
 * <p>Usage: {@code SpeedBench REPORT.json SECONDS BATCHES FILE...}, BATCHES as {@code 1,64,1024}; each file and batch
 * size is timed for about SECONDS (at least 10 calls) after 1 s of warm-up.
 */
public final class SpeedBench {

    private SpeedBench() {
    }

    /** One model file at one batch size. */
    public static final class Row {
        public String file;
        public String runtime;
        public int batch;
        public int calls;
        public double samplesPerSecond;
        public double p50Ms;
        public double p99Ms;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 4) {
            System.err.println("usage: SpeedBench REPORT.json SECONDS BATCHES FILE...");
            System.exit(2);
        }
        double seconds = Double.parseDouble(args[1]);
        int[] batches = Arrays.stream(args[2].split(",")).mapToInt(Integer::parseInt).toArray();
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        List<Row> rows = new ArrayList<>();
        for (int i = 3; i < args.length; i++) {
            File file = new File(args[i]);
            boolean onnx = file.getName().endsWith(GanModel.Runtime.ONNX.suffix);
            try (GanModel model = onnx ? OnnxModel.load(file) : ImportedModel.load(file, WorkspaceMode.ENABLED)) {
                for (int batch : batches) {
                    Row row = time(model, batch, seconds);
                    row.file = file.getPath();
                    row.runtime = onnx ? "java onnxruntime" : "dl4j";
                    rows.add(row);
                    System.out.printf("%s [%s] batch %d: %.0f samples/s, p50 %.3f ms, p99 %.3f ms (%d calls)%n",
                            row.file, row.runtime, batch, row.samplesPerSecond, row.p50Ms, row.p99Ms, row.calls);
                }
            }
        }
        new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(new File(args[0]), rows);
    }

    static Row time(GanModel model, int batch, double seconds) throws Exception {
        Random random = new Random(0);
        Runnable call;
        if (model instanceof OnnxModel) {
            OnnxModel session = (OnnxModel) model;
            Map<String, long[]> shapes = new LinkedHashMap<>();
            Map<String, float[]> floats = new LinkedHashMap<>();
            Map<String, long[]> labels = new LinkedHashMap<>();
            for (Map.Entry<String, long[]> input : session.sampleShapes().entrySet()) {
                long[] shape = new long[input.getValue().length + 1];
                shape[0] = batch;
                System.arraycopy(input.getValue(), 0, shape, 1, input.getValue().length);
                shapes.put(input.getKey(), shape);
                int values = (int) Arrays.stream(shape).reduce(1, (a, b) -> a * b);
                if (input.getKey().equals("label")) {
                    labels.put(input.getKey(), random.longs(values, 0, 10).toArray());
                } else {
                    float[] noise = new float[values];
                    for (int j = 0; j < noise.length; j++) {
                        noise[j] = (float) random.nextGaussian();
                    }
                    floats.put(input.getKey(), noise);
                }
            }
            call = () -> {
                Map<String, Object> buffers = new LinkedHashMap<>();
                floats.forEach((name, values) -> buffers.put(name, FloatBuffer.wrap(values)));
                labels.forEach((name, values) -> buffers.put(name, LongBuffer.wrap(values)));
                unchecked(() -> session.run(buffers, shapes));
            };
        } else {
            Map<String, INDArray> feeds = new LinkedHashMap<>();
            for (Map.Entry<String, Integer> input : model.inputSizes().entrySet()) {
                feeds.put(input.getKey(), input.getKey().equals("label")
                        ? Nd4j.createUninitialized(DataType.FLOAT, batch, 1).assign(random.nextInt(10))
                        : Nd4j.randn(DataType.FLOAT, batch, input.getValue()));
            }
            call = () -> unchecked(() -> model.outputs(feeds));
        }
        long warmUpEnd = System.nanoTime() + 1_000_000_000L;
        do {
            call.run();
        } while (System.nanoTime() < warmUpEnd);
        List<Long> latencies = new ArrayList<>();
        long end = System.nanoTime() + (long) (seconds * 1e9);
        while (latencies.size() < 10 || (System.nanoTime() < end && latencies.size() < 100_000)) {
            long start = System.nanoTime();
            call.run();
            latencies.add(System.nanoTime() - start);
        }
        latencies.sort(null);
        Row row = new Row();
        row.batch = batch;
        row.calls = latencies.size();
        row.p50Ms = latencies.get(latencies.size() / 2) / 1e6;
        row.p99Ms = latencies.get(Math.min(latencies.size() - 1, (int) Math.ceil(latencies.size() * 0.99) - 1)) / 1e6;
        row.samplesPerSecond = batch / (row.p50Ms / 1e3);
        return row;
    }

    private interface Call {
        Object run() throws Exception;
    }

    private static void unchecked(Call call) {
        try {
            call.run();
        } catch (Exception error) {
            throw new IllegalStateException(error);
        }
    }
}
