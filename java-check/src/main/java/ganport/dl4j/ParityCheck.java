package ganport.dl4j;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import org.deeplearning4j.nn.modelimport.keras.Hdf5Archive;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.linalg.indexing.INDArrayIndex;
import org.nd4j.linalg.indexing.NDArrayIndex;
import org.nd4j.nativeblas.NativeOpsHolder;
import org.nd4j.shade.jackson.databind.ObjectMapper;
import org.nd4j.shade.jackson.databind.SerializationFeature;

/**
 * Runs every model of a folder that has test vectors beside it on the JVM and compares with Keras: with DL4J, each
 * Keras HDF5 file imported by DL4J's own importer in test mode, outputs and per-layer activations; with ONNX Runtime
 * for Java, each ONNX file, outputs. The inputs are those stored beside the model (DL4J's end-to-end convention:
 * {@code NAME_inputs_and_outputs.h5} with groups inputs / predictions / activations).
 *
 * <p>It reports numbers, not verdicts: {@code ganport verify} judges them by ganport's parity rule (ganport/parity.py,
 * which also holds a deep model against a float64 truth this side does not have). Given a TOLERANCE, it also says
 * whether each model is within it, as that rule's static form: an output within TOLERANCE times max(1, max |Keras
 * output|), a hidden layer within TOLERANCE times its scale; it never picks a tolerance of its own.
 *
 * <p>Usage: {@code ParityCheck [--runtime dl4j|onnx] MODELS_FOLDER REPORT.json [TOLERANCE]} (dl4j by default). Exit
 * code 0 when every model was run and compared (and, with TOLERANCE, is within it), 1 otherwise, 2 on bad arguments.
 */
public final class ParityCheck {

    /** Relative differences are taken against max(|keras|, this floor), as ganport's Python side does. */
    public static final double RELATIVE_FLOOR = 1e-3;
    public static final String VECTORS_SUFFIX = "_inputs_and_outputs.h5";

    private ParityCheck() {
    }

    /** The outcome for one model file. */
    public static final class ModelResult {
        public String model;
        public String file;
        /** dl4j or java onnxruntime. */
        public String runtime;
        /** compared, not-importable or error. */
        public String status;
        public String reason;
        public Double maxAbsDiff;
        public Double maxRelDiff;
        /** With a TOLERANCE: whether the outputs and every layer are within it (null without one, or not compared). */
        public Boolean withinTolerance;
        /** max(1, max |Keras output|): an output's bound is a tolerance times this. */
        public Double outputScale;
        /** The largest difference over the per-layer activations (a hidden layer can be off while outputs agree). */
        public Double maxLayerAbsDiff;
        /**
         * What ganport's per-layer rule uses: each layer's difference divided by its scale (the largest |activation|
         * of that layer in Keras, at least 1), largest first at {@link #worstLayer}. Two correct float32 convolutions
         * summing 1152 products of values near 50 differ by ~1e-5; layers within [-1, 1] keep atol itself.
         */
        public Double maxLayerScaledDiff;
        public String worstLayer;
        public long[] kerasOutputShape;
        public long[] dl4jOutputShape;
        public String shapeReconciliation;
        /** MultiLayerNetwork (a Keras Sequential), ComputationGraph (a functional Model) or OrtSession (ONNX). */
        public String networkKind;
        public List<Map<String, Object>> layers = new ArrayList<>();

        public boolean passed() {
            return "compared".equals(status) && !Boolean.FALSE.equals(withinTolerance);
        }
    }

    /** The whole report, written as JSON. */
    public static final class Report {
        public String dl4jVersion = "1.0.0-M2.1";
        public String runtime;
        /** The ND4J build that ran DL4J: "onednn" or "plain" (java-check carries both; pom.xml says which loads). */
        public String natives;
        /** The TOLERANCE given, or null: the report then holds numbers only. */
        public Double tolerance;
        /** Every model compared, and within the TOLERANCE where one was given. */
        public boolean passed;
        public List<ModelResult> models = new ArrayList<>();
    }

    public static void main(String[] args) throws IOException {
        GanModel.Runtime runtime = GanModel.Runtime.DL4J;
        if (args.length > 1 && args[0].equals("--runtime")) {
            try {
                runtime = GanModel.Runtime.parse(args[1]);
            } catch (IllegalArgumentException error) {
                System.err.println("error: " + error.getMessage());
                System.exit(2);
            }
            args = Arrays.copyOfRange(args, 2, args.length);
        }
        if (args.length < 2 || args.length > 3) {
            System.err.println("usage: ParityCheck [--runtime dl4j|onnx] MODELS_FOLDER REPORT.json [TOLERANCE]");
            System.exit(2);
        }
        Double tolerance = args.length == 3 ? Double.valueOf(args[2]) : null;
        Report report = check(new File(args[0]), tolerance, runtime);
        write(report, new File(args[1]));
        for (ModelResult result : report.models) {
            System.out.println(summary(result));
        }
        System.exit(report.passed ? 0 : 1);
    }

    public static String summary(ModelResult result) {
        if (result.maxAbsDiff == null) {
            return String.format("%s [%s]: %s (%s)", result.model, result.runtime, result.status, result.reason);
        }
        String layers = result.layers.isEmpty() ? "" : String.format(", layers max abs diff %.3g", result.maxLayerAbsDiff);
        String within = result.withinTolerance == null ? "" : result.withinTolerance ? ", within" : ", beyond";
        return String.format("%s [%s]: max abs diff %.3g, max rel diff %.3g%s%s%s", result.model, result.runtime,
                result.maxAbsDiff, result.maxRelDiff, layers, within,
                result.reason == null ? "" : " (" + result.reason + ")");
    }

    /** Compare every HDF5 model in {@code folder} that has a test-vector file beside it, run by DL4J. */
    public static Report check(File folder, Double tolerance) throws IOException {
        return check(folder, tolerance, GanModel.Runtime.DL4J);
    }

    /**
     * Compare every model file {@code runtime} runs in {@code folder} that has a test-vector file beside it; with a
     * {@code tolerance} (null: none), also say whether each is within it.
     */
    public static Report check(File folder, Double tolerance, GanModel.Runtime runtime) throws IOException {
        if (!folder.isDirectory()) {
            throw new IOException(folder + " is not a folder of exported models");
        }
        Nd4j.setDefaultDataTypes(DataType.FLOAT, DataType.FLOAT);
        Report report = new Report();
        report.tolerance = tolerance;
        report.runtime = runtime.label();
        report.natives = NativeOpsHolder.getInstance().getDeviceNativeOps().buildInfo().contains("HAVE_ONEDNN")
                ? "onednn" : "plain";
        List<Path> models;
        try (Stream<Path> files = Files.list(folder.toPath())) {
            models = files.filter(p -> p.toString().endsWith(runtime.suffix) && !p.toString().endsWith(VECTORS_SUFFIX))
                    .sorted().collect(Collectors.toList());
        }
        for (Path model : models) {
            String fileName = model.getFileName().toString();
            String name = fileName.substring(0, fileName.length() - runtime.suffix.length());
            Path vectors = model.resolveSibling(name + VECTORS_SUFFIX);
            if (Files.isRegularFile(vectors)) {
                report.models.add(checkModel(name, model.toFile(), vectors.toFile(), tolerance, runtime));
            }
        }
        if (report.models.isEmpty()) {
            throw new IOException(folder + " holds no MODEL" + runtime.suffix + " with a MODEL" + VECTORS_SUFFIX
                    + " beside it; export some with `ganport export RUN --format h5` (and `--format onnx`)");
        }
        report.passed = report.models.stream().allMatch(ModelResult::passed);
        return report;
    }

    public static ModelResult checkModel(String name, File modelFile, File vectorsFile, Double tolerance,
            GanModel.Runtime runtime) {
        ModelResult result = new ModelResult();
        result.model = name;
        result.file = modelFile.getPath();
        result.runtime = runtime.label();
        GanModel network;
        try {
            network = runtime.load(modelFile);
        } catch (OutOfMemoryError error) {
            result.status = "error";
            result.reason = outOfMemory(error);
            return result;
        } catch (Exception | UnsatisfiedLinkError error) {
            result.status = "not-importable";
            result.reason = (runtime == GanModel.Runtime.DL4J ? "not DL4J-importable: " : "ONNX Runtime cannot load it: ")
                    + rootMessage(error);
            return result;
        }
        result.networkKind = network.kind();
        try (network; Hdf5Archive vectors = new Hdf5Archive(vectorsFile.getPath())) {
            Map<String, String> listed = ImportedModel.rootStrings(vectorsFile, "inputs", "outputs");
            Map<String, INDArray> inputs = new LinkedHashMap<>();
            for (String input : names(listed, vectorsFile, "inputs")) {
                inputs.put(input, vectors.readDataSet(input, "inputs"));
            }
            List<String> outputNames = names(listed, vectorsFile, "outputs");
            double outputScale = 1.0;
            INDArray[] dl4jOutputs = network.outputs(inputs);
            if (dl4jOutputs.length != outputNames.size()) {
                throw new IllegalStateException(runtime.label() + " gives " + dl4jOutputs.length + " outputs, Keras "
                        + outputNames);
            }
            double[] diff = {0, 0};
            for (int i = 0; i < dl4jOutputs.length; i++) {
                INDArray kerasOutput = vectors.readDataSet(outputNames.get(i), "predictions");
                if (i == 0) {
                    result.kerasOutputShape = kerasOutput.shape();
                    result.dl4jOutputShape = dl4jOutputs[i].shape();
                    result.shapeReconciliation = Arrays.equals(kerasOutput.shape(), dl4jOutputs[i].shape()) ? "none"
                            : "flattened both to [N, -1] in C order (DL4J drops a trailing Reshape)";
                }
                outputScale = Math.max(outputScale, kerasOutput.amaxNumber().doubleValue());
                double[] outputDiff = compare(kerasOutput, dl4jOutputs[i]);
                diff[0] = Math.max(diff[0], outputDiff[0]);
                diff[1] = Math.max(diff[1], outputDiff[1]);
            }
            result.maxAbsDiff = diff[0];
            result.maxRelDiff = diff[1];
            result.outputScale = outputScale;

            // ONNX exports store no activations (nor does ONNX Runtime give per-layer ones): no group to read.
            List<String> layerNames = network.layerNames();
            List<String> kerasLayers = layerNames.isEmpty() || !vectors.getGroups().contains("activations")
                    ? List.of() : vectors.getDataSets("activations");
            Map<Long, Map<String, INDArray>> firstInputs = new HashMap<>();
            for (String layerName : layerNames) {
                if (kerasLayers.contains(layerName)) {
                    INDArray kerasActivation = vectors.readDataSet(layerName, "activations");
                    Map<String, INDArray> layerInputs = firstInputs.computeIfAbsent(kerasActivation.size(0),
                            rows -> firstRows(inputs, rows, layerName));
                    double[] layerDiff = compare(kerasActivation, network.activation(layerName, layerInputs));
                    Map<String, Object> layer = new LinkedHashMap<>();
                    layer.put("name", layerName);
                    layer.put("maxAbsDiff", layerDiff[0]);
                    layer.put("maxRelDiff", layerDiff[1]);
                    layer.put("scale", Math.max(1.0, kerasActivation.amaxNumber().doubleValue()));
                    layer.put("inputs", kerasActivation.size(0));
                    result.layers.add(layer);
                }
            }
            result.maxLayerAbsDiff = 0.0;
            result.maxLayerScaledDiff = 0.0;
            for (Map<String, Object> layer : result.layers) {
                double layerAbsDiff = (double) layer.get("maxAbsDiff");
                double scaledDiff = layerAbsDiff / (double) layer.get("scale");
                result.maxLayerAbsDiff = Math.max(result.maxLayerAbsDiff, layerAbsDiff);
                if (result.worstLayer == null || scaledDiff > result.maxLayerScaledDiff) {
                    result.maxLayerScaledDiff = scaledDiff;
                    result.worstLayer = (String) layer.get("name");
                }
            }
            result.status = "compared";
            if (tolerance != null) {
                judge(result, tolerance);
            }
        } catch (Exception error) {
            result.status = "error";
            result.reason = rootMessage(error);
        } catch (OutOfMemoryError error) {
            // the JVM's caps (ganport sets -Xmx and JavaCPP's maxbytes from its memory budget) were reached: this
            // model's arrays are released, and the next model still runs
            result.status = "error";
            result.reason = outOfMemory(error);
        }
        return result;
    }

    /**
     * The inputs' first {@code rows} samples: ganport stores each layer's activations for the first of the fixed
     * inputs only (as many as fit in a few MB; all of them in files exported before 2026-12-07).
     */
    static Map<String, INDArray> firstRows(Map<String, INDArray> inputs, long rows, String layerName) {
        Map<String, INDArray> first = new LinkedHashMap<>();
        for (Map.Entry<String, INDArray> input : inputs.entrySet()) {
            INDArray array = input.getValue();
            if (rows < 1 || rows > array.size(0)) {
                throw new IllegalArgumentException("activations/" + layerName + " holds " + rows + " rows for "
                        + array.size(0) + " inputs; re-export the test vectors with `ganport export --format h5`");
            }
            if (rows == array.size(0)) {
                first.put(input.getKey(), array);
                continue;
            }
            INDArrayIndex[] index = new INDArrayIndex[array.rank()];
            index[0] = NDArrayIndex.interval(0, rows);
            for (int axis = 1; axis < index.length; axis++) {
                index[axis] = NDArrayIndex.all();
            }
            first.put(input.getKey(), array.get(index).dup('c'));
        }
        return first;
    }

    /** The static form of ganport's parity rule with the {@code tolerance} given: within it, or why not. */
    private static void judge(ModelResult result, double tolerance) {
        double outputBound = tolerance * result.outputScale;
        result.withinTolerance = result.maxAbsDiff <= outputBound && result.maxLayerScaledDiff <= tolerance;
        if (result.maxAbsDiff > outputBound) {
            result.reason = String.format("max abs diff %.3g exceeds %.3g", result.maxAbsDiff, outputBound);
        } else if (result.maxLayerScaledDiff > tolerance) {
            result.reason = String.format("layer %s: max abs diff / scale %.3g exceeds %.3g", result.worstLayer,
                    result.maxLayerScaledDiff, tolerance);
        }
    }

    private static String outOfMemory(OutOfMemoryError error) {
        return "ran out of java-check's memory cap (" + rootMessage(error) + "); raise GANPORT_MEMORY_BUDGET on a "
                + "machine that has the memory";
    }

    /**
     * Max abs and max rel difference; both arrays are compared as [N, -1] in C order when their shapes differ. One
     * sample at a time is copied out as doubles, so the comparison holds one sample's values beside the arrays, not
     * two double copies of the whole batch.
     */
    static double[] compare(INDArray keras, INDArray dl4j) {
        if (keras.size(0) != dl4j.size(0) || keras.length() != dl4j.length()) {
            throw new IllegalArgumentException("output shapes " + Arrays.toString(keras.shape()) + " and "
                    + Arrays.toString(dl4j.shape()) + " cannot be reconciled");
        }
        long rows = keras.size(0);
        INDArray expectedRows = keras.dup('c').reshape('c', rows, -1);
        INDArray actualRows = dl4j.dup('c').reshape('c', rows, -1);
        double maxAbs = 0;
        double maxRel = 0;
        for (long row = 0; row < rows; row++) {
            double[] expected = expectedRows.getRow(row).castTo(DataType.DOUBLE).dup('c').data().asDouble();
            double[] actual = actualRows.getRow(row).castTo(DataType.DOUBLE).dup('c').data().asDouble();
            for (int i = 0; i < expected.length; i++) {
                double abs = Math.abs(expected[i] - actual[i]);
                if (Double.isNaN(abs)) {
                    return new double[] {Double.POSITIVE_INFINITY, Double.POSITIVE_INFINITY};
                }
                maxAbs = Math.max(maxAbs, abs);
                maxRel = Math.max(maxRel, abs / Math.max(Math.abs(expected[i]), RELATIVE_FLOOR));
            }
        }
        return new double[] {maxAbs, maxRel};
    }

    /** The input or output names a test-vector file lists, in the Keras model's order. */
    @SuppressWarnings("unchecked")
    static List<String> names(Map<String, String> listed, File vectorsFile, String attribute) throws Exception {
        String json = listed.get(attribute);
        if (json == null) {
            throw new IOException(vectorsFile + " has no " + attribute + " attribute: not a test-vector file");
        }
        Map<String, Object> parsed = new ObjectMapper().readValue(json, Map.class);
        return (List<String>) parsed.get(attribute);
    }

    private static String rootMessage(Throwable error) {
        Throwable root = error;
        while (root.getCause() != null && root.getCause() != root) {
            root = root.getCause();
        }
        String message = root.getMessage() == null ? root.getClass().getSimpleName() : root.getMessage();
        return message.lines().findFirst().orElse(message).trim();
    }

    public static void write(Report report, File target) throws IOException {
        File parent = target.getAbsoluteFile().getParentFile();
        parent.mkdirs();
        File temporary = File.createTempFile("." + target.getName(), ".tmp", parent);
        try {
            new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(temporary, report);
            Files.move(temporary.toPath(), target.toPath(), StandardCopyOption.REPLACE_EXISTING,
                    StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(temporary.toPath());
        }
    }
}
