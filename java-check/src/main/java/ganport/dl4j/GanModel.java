package ganport.dl4j;

import java.io.File;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import org.nd4j.linalg.api.ndarray.INDArray;

/**
 * A ganport export run on the JVM, whichever runtime runs it: DL4J's Keras import of the HDF5 file
 * ({@link ImportedModel}) or ONNX Runtime for Java on the ONNX file ({@link OnnxModel}). Inputs are Keras's own arrays
 * by input name (images NHWC, class labels as float indices, as the test vectors store them); outputs come back in
 * the model's output order.
 */
public interface GanModel extends AutoCloseable {

    /** The two routes, each with the file it runs. */
    enum Runtime {
        DL4J(".h5"), ONNX(".onnx");

        public final String suffix;

        Runtime(String suffix) {
            this.suffix = suffix;
        }

        /** {@code dl4j} or {@code onnx}, as the command lines spell them. */
        public static Runtime parse(String name) {
            try {
                return valueOf(name.toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException error) {
                throw new IllegalArgumentException("--runtime must be dl4j or onnx, got " + name);
            }
        }

        public String label() {
            return this == DL4J ? "dl4j" : "java onnxruntime";
        }

        public GanModel load(File file) throws Exception {
            return this == DL4J ? ImportedModel.load(file) : OnnxModel.load(file);
        }
    }

    /** MultiLayerNetwork, ComputationGraph or OrtSession. */
    String kind();

    /** The model's outputs, in its output order. */
    INDArray[] outputs(Map<String, INDArray> inputs) throws Exception;

    /** Names of the layers whose activations can be compared with Keras's, in forward order (none for ONNX, whose
     * graph folds BatchNorm into the layer before it). */
    List<String> layerNames();

    /** One layer's activation, for a name {@link #layerNames()} lists. */
    INDArray activation(String layer, Map<String, INDArray> inputs);

    /** Input name -> the size of its last axis (`z`: the latent size; `label`: 1). */
    Map<String, Integer> inputSizes() throws Exception;

    @Override
    default void close() throws Exception {
    }
}
