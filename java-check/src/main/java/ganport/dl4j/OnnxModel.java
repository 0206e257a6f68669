package ganport.dl4j;

import java.io.File;
import java.nio.FloatBuffer;
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * A ganport ONNX export on ONNX Runtime for Java (CPU): one session, inputs by name in the file's types (float32
 * noise and images NHWC, int64 class labels, converted from the test vectors' float indices), every output.
 */
public final class OnnxModel implements GanModel {

    private final OrtEnvironment environment;
    private final OrtSession session;

    private OnnxModel(OrtEnvironment environment, OrtSession session) {
        this.environment = environment;
        this.session = session;
    }

    public static OnnxModel load(File file) throws Exception {
        return load(file, 0);
    }

    /** A session with {@code threads} intra-op threads (0: onnxruntime's default, one per core). */
    public static OnnxModel load(File file, int threads) throws Exception {
        OrtEnvironment environment = OrtEnvironment.getEnvironment();
        try (OrtSession.SessionOptions options = new OrtSession.SessionOptions()) {
            options.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
            if (threads > 0) {
                options.setIntraOpNumThreads(threads);
            }
            return new OnnxModel(environment, environment.createSession(file.getPath(), options));
        }
    }

    @Override
    public String kind() {
        return "OrtSession";
    }

    @Override
    public INDArray[] outputs(Map<String, INDArray> inputs) throws Exception {
        Map<String, OnnxTensor> feeds = new LinkedHashMap<>();
        try {
            for (Map.Entry<String, NodeInfo> input : session.getInputInfo().entrySet()) {
                INDArray array = inputs.get(input.getKey());
                if (array == null) {
                    throw new IllegalArgumentException("no input " + input.getKey() + " (given " + inputs.keySet() + ")");
                }
                feeds.put(input.getKey(), tensor(array, ((TensorInfo) input.getValue().getInfo()).type));
            }
            try (OrtSession.Result result = session.run(feeds)) {
                List<INDArray> outputs = new ArrayList<>();
                // The graph's output order (a Result iterates in its own order).
                for (String name : session.getOutputInfo().keySet()) {
                    OnnxTensor tensor = (OnnxTensor) result.get(name).orElseThrow();
                    FloatBuffer values = tensor.getFloatBuffer();
                    float[] data = new float[values.remaining()];
                    values.get(data);
                    outputs.add(Nd4j.create(data, tensor.getInfo().getShape(), 'c'));
                }
                return outputs.toArray(new INDArray[0]);
            }
        } finally {
            for (OnnxTensor tensor : feeds.values()) {
                tensor.close();
            }
        }
    }

    /** A float32 array as the file's input type: float32 as it is, int64 for class labels. */
    OnnxTensor tensor(INDArray array, OnnxJavaType type) throws Exception {
        long[] shape = array.shape();
        if (type == OnnxJavaType.INT64) {
            return OnnxTensor.createTensor(environment, LongBuffer.wrap(array.castTo(DataType.LONG).dup('c')
                    .data().asLong()), shape);
        }
        return OnnxTensor.createTensor(environment, FloatBuffer.wrap(array.castTo(DataType.FLOAT).dup('c')
                .data().asFloat()), shape);
    }

    @Override
    public List<String> layerNames() {
        return List.of();
    }

    @Override
    public INDArray activation(String layer, Map<String, INDArray> inputs) {
        throw new UnsupportedOperationException("ONNX exports keep no per-layer outputs to compare");
    }

    @Override
    public Map<String, Integer> inputSizes() throws Exception {
        Map<String, Integer> sizes = new LinkedHashMap<>();
        for (Map.Entry<String, NodeInfo> input : session.getInputInfo().entrySet()) {
            long[] shape = ((TensorInfo) input.getValue().getInfo()).getShape();
            sizes.put(input.getKey(), (int) shape[shape.length - 1]);
        }
        return sizes;
    }

    /** Input name -> its shape without the batch axis: noise [100], a label [1], a critic's image [28, 28, 1]. */
    public Map<String, long[]> sampleShapes() throws Exception {
        Map<String, long[]> shapes = new LinkedHashMap<>();
        for (Map.Entry<String, NodeInfo> input : session.getInputInfo().entrySet()) {
            long[] shape = ((TensorInfo) input.getValue().getInfo()).getShape();
            shapes.put(input.getKey(), Arrays.copyOfRange(shape, 1, shape.length));
        }
        return shapes;
    }

    /** Run raw float32 inputs (and int64 labels) without INDArray conversion: what a JVM service does per request. */
    public float[] run(Map<String, Object> buffers, Map<String, long[]> shapes) throws Exception {
        Map<String, OnnxTensor> feeds = new LinkedHashMap<>();
        try {
            for (Map.Entry<String, Object> input : buffers.entrySet()) {
                Object buffer = input.getValue();
                long[] shape = shapes.get(input.getKey());
                feeds.put(input.getKey(), buffer instanceof LongBuffer
                        ? OnnxTensor.createTensor(environment, (LongBuffer) buffer, shape)
                        : OnnxTensor.createTensor(environment, (FloatBuffer) buffer, shape));
            }
            try (OrtSession.Result result = session.run(feeds)) {
                FloatBuffer values = ((OnnxTensor) result.get(0)).getFloatBuffer();
                float[] data = new float[values.remaining()];
                values.get(data);
                return data;
            }
        } finally {
            for (OnnxTensor tensor : feeds.values()) {
                tensor.close();
            }
        }
    }

    @Override
    public void close() throws Exception {
        session.close();
    }
}
