package ganport.dl4j;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.deeplearning4j.nn.conf.CNN2DFormat;
import org.deeplearning4j.nn.conf.InputPreProcessor;
import org.deeplearning4j.nn.conf.WorkspaceMode;
import org.deeplearning4j.nn.conf.layers.DenseLayer;
import org.deeplearning4j.nn.conf.layers.OutputLayer;
import org.deeplearning4j.nn.conf.preprocessor.CnnToFeedForwardPreProcessor;
import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.graph.vertex.GraphVertex;
import org.bytedeco.hdf5.Attribute;
import org.bytedeco.hdf5.DataSpace;
import org.bytedeco.hdf5.DataType;
import org.bytedeco.hdf5.H5File;
import org.bytedeco.javacpp.BytePointer;
import org.bytedeco.javacpp.Pointer;
import org.bytedeco.javacpp.PointerPointer;
import org.deeplearning4j.nn.modelimport.keras.Hdf5Archive;
import org.deeplearning4j.nn.modelimport.keras.KerasModel;
import org.deeplearning4j.nn.modelimport.keras.KerasSequentialModel;
import org.deeplearning4j.nn.modelimport.keras.utils.KerasModelBuilder;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.shade.jackson.databind.ObjectMapper;

import static org.bytedeco.hdf5.global.hdf5.H5F_ACC_RDONLY;
import static org.bytedeco.hdf5.global.hdf5.H5T_STRING;
import static org.bytedeco.hdf5.global.hdf5.H5free_memory;

/**
 * A Keras HDF5 model imported the way its config asks, by DL4J's own importer: a Sequential as a MultiLayerNetwork
 * (what {@code importKerasSequentialModelAndWeights} builds), a functional Model as a ComputationGraph ({@code
 * importKerasModelAndWeights}), with the file's attributes read by {@link #rootStrings} rather than DL4J's. Inputs are
 * Keras's own arrays by Keras input name (images NHWC, class labels as float indices); outputs come back in Keras's
 * output order.
 */
public abstract class ImportedModel implements GanModel {

    private Map<String, Object> kerasConfig;

    /**
     * One layer's activation from a forward pass that stops there: in a full pass an activation layer overwrites
     * the previous layer's output in place (DL4J's own end-to-end test does the same).
     */
    @Override
    public abstract INDArray activation(String layer, Map<String, INDArray> kerasInputs);

    /** Import {@code modelFile} for layer-by-layer comparison (workspaces off: a forward pass that stops inside the
     * network would otherwise leave the layer-activation workspace open for the next call). */
    public static ImportedModel load(File modelFile) throws Exception {
        return load(modelFile, WorkspaceMode.NONE);
    }

    /** Import {@code modelFile}; enforceTrainingConfig=false, since ganport saves without an optimizer. Inference
     * with {@code WorkspaceMode.ENABLED} is what DL4J recommends for speed (reused off-heap buffers). */
    @SuppressWarnings("unchecked")
    public static ImportedModel load(File modelFile, WorkspaceMode workspaces) throws Exception {
        Map<String, String> attributes =
                rootStrings(modelFile, "model_config", "keras_version", "backend", "training_config");
        if (!attributes.containsKey("model_config")) {
            throw new IOException(modelFile + " has no model_config attribute: not a Keras model file");
        }
        Map<String, Object> config = new ObjectMapper().readValue(attributes.get("model_config"), Map.class);
        boolean sequential = "Sequential".equals(config.get("class_name"));
        KerasModelBuilder builder = (sequential
                ? new KerasSequentialModel().modelBuilder() : new KerasModel().modelBuilder())
                .modelJson(importerJson(config, attributes))
                .weightsHdf5Filename(modelFile.getPath())
                .enforceTrainingConfig(false);
        if (attributes.containsKey("training_config")) {
            builder.trainingJson(attributes.get("training_config"));
        }
        ImportedModel model;
        if (sequential) {
            MultiLayerNetwork network = builder.buildSequential().getMultiLayerNetwork();
            network.getLayerWiseConfigurations().setInferenceWorkspaceMode(workspaces);
            network.getLayerWiseConfigurations().setTrainingWorkspaceMode(workspaces);
            model = new Sequential(network);
        } else {
            ComputationGraph graph = builder.buildModel().getComputationGraph();
            graph.getConfiguration().setInferenceWorkspaceMode(workspaces);
            graph.getConfiguration().setTrainingWorkspaceMode(workspaces);
            model = new Graph(graph);
        }
        model.kerasConfig = config;
        return model;
    }

    /**
     * The model JSON DL4J's {@code KerasModelBuilder.modelHdf5Filename} would build from the file's attributes:
     * model_config plus keras_version (its first 5 characters, as DL4J reads it) and, for Keras 2, backend.
     */
    private static String importerJson(Map<String, Object> config, Map<String, String> attributes) throws Exception {
        Map<String, Object> json = new LinkedHashMap<>(config);
        String kerasVersion = attributes.get("keras_version");
        if (kerasVersion != null) {
            json.put("keras_version", kerasVersion.substring(0, Math.min(5, kerasVersion.length())));
            if (kerasVersion.startsWith("2") && attributes.containsKey("backend")) {
                json.put("backend", attributes.get("backend"));
            }
        }
        return new ObjectMapper().writeValueAsString(json);
    }

    /**
     * String attributes at the root of an HDF5 file, each read whole, by name (absent where the file has none), the
     * file opened once. Not DL4J's
     * {@code Hdf5Archive.readAttributeAsJson}: that reads into a 2048-byte buffer first, and HDF5 copies the whole
     * string into it, overrunning the heap by several KB for any real model_config, which later crashed a JVM inside
     * HDF5's free lists. Every HDF5 object is closed here, under DL4J's HDF5 lock, never by the garbage collector.
     */
    static Map<String, String> rootStrings(File file, String... names) throws IOException {
        synchronized (Hdf5Archive.LOCK_OBJECT) {
            H5File h5 = new H5File(file.getPath(), H5F_ACC_RDONLY());
            try {
                Map<String, String> strings = new LinkedHashMap<>();
                for (String name : names) {
                    if (h5.attrExists(name)) {
                        strings.put(name, readString(h5.openAttribute(name), file, name));
                    }
                }
                return strings;
            } finally {
                h5.deallocate();
            }
        }
    }

    /** One scalar string attribute, variable- or fixed-length, closed after reading. */
    private static String readString(Attribute attribute, File file, String name) throws IOException {
        DataType type = attribute.getDataType();
        DataSpace space = attribute.getSpace();
        try {
            // Read only as what it is: a number read into a string buffer would be bytes of a number (fail closed).
            if (type._getClass() != H5T_STRING || space.getSimpleExtentNpoints() != 1) {
                throw new IOException(file + ": attribute " + name + " is not a single string");
            }
            if (type.isVariableStr()) {
                // HDF5 allocates a variable-length string and stores its address in our one-pointer buffer.
                PointerPointer<BytePointer> address = new PointerPointer<>(1L);
                attribute.read(type, (Pointer) address);
                BytePointer chars = address.get(BytePointer.class, 0);
                try {
                    return chars.getString(StandardCharsets.UTF_8);
                } finally {
                    H5free_memory(chars);
                }
            }
            // A fixed-length string fills exactly its type's size, padded with zero bytes (h5py's way).
            BytePointer chars = new BytePointer(type.getSize() + 1);
            chars.zero();
            attribute.read(type, (Pointer) chars);
            String padded = chars.getString(StandardCharsets.UTF_8);
            int end = padded.indexOf('\0');
            return end < 0 ? padded : padded.substring(0, end);
        } finally {
            space.deallocate();
            type.deallocate();
            attribute.deallocate();
        }
    }

    /** Input name -> size of its last axis, read from the model's Keras config (a Sequential's input is `z`). */
    @Override
    @SuppressWarnings("unchecked")
    public Map<String, Integer> inputSizes() {
        Map<String, Object> body = (Map<String, Object>) kerasConfig.get("config");
        List<Map<String, Object>> layers = (List<Map<String, Object>>) body.get("layers");
        boolean sequential = "Sequential".equals(kerasConfig.get("class_name"));
        Map<String, Integer> sizes = new LinkedHashMap<>();
        for (Map<String, Object> layer : layers) {
            Map<String, Object> fields = (Map<String, Object>) layer.get("config");
            List<Object> shape = (List<Object>) fields.get("batch_input_shape");
            if (shape != null && ("InputLayer".equals(layer.get("class_name")) || sizes.isEmpty())) {
                String name = sequential ? "z" : (String) fields.get("name");
                sizes.put(name, ((Number) shape.get(shape.size() - 1)).intValue());
            }
            if (sequential && !sizes.isEmpty()) {
                break;
            }
        }
        return sizes;
    }

    static final class Sequential extends ImportedModel {
        private final MultiLayerNetwork network;

        Sequential(MultiLayerNetwork network) {
            this.network = network;
        }

        @Override
        public String kind() {
            return "MultiLayerNetwork";
        }

        @Override
        public INDArray[] outputs(Map<String, INDArray> kerasInputs) {
            return new INDArray[] {network.output(input(kerasInputs), false)};
        }

        @Override
        public List<String> layerNames() {
            List<String> names = new ArrayList<>();
            for (int i = 0; i < network.getnLayers(); i++) {
                names.add(network.getLayer(i).conf().getLayer().getLayerName());
            }
            return names;
        }

        @Override
        public INDArray activation(String layer, Map<String, INDArray> kerasInputs) {
            int index = layerNames().indexOf(layer);
            return network.feedForwardToLayer(index, input(kerasInputs), false).get(index + 1).dup();
        }

        /**
         * A network whose first layer is dense takes [N, H*W*C] in C order, which is what Keras's Flatten computes;
         * one that starts with a Flatten preprocessor takes rank 4 in that preprocessor's format; convolutional
         * layers were imported NHWC and take Keras's array as it is.
         */
        private INDArray input(Map<String, INDArray> kerasInputs) {
            INDArray kerasInput = kerasInputs.values().iterator().next();
            if (kerasInput.rank() != 4) {
                return kerasInput;
            }
            InputPreProcessor first = network.getLayerWiseConfigurations().getInputPreProcess(0);
            if (first instanceof CnnToFeedForwardPreProcessor) {
                CNN2DFormat format = ((CnnToFeedForwardPreProcessor) first).getFormat();
                return format == CNN2DFormat.NHWC ? kerasInput : kerasInput.permute(0, 3, 1, 2).dup('c');
            }
            Object layer = network.getLayer(0).conf().getLayer();
            if (layer instanceof DenseLayer || layer instanceof OutputLayer) {
                return kerasInput.reshape('c', kerasInput.size(0), kerasInput.length() / kerasInput.size(0));
            }
            return kerasInput;
        }
    }

    static final class Graph extends ImportedModel {
        private final ComputationGraph graph;

        Graph(ComputationGraph graph) {
            this.graph = graph;
        }

        @Override
        public String kind() {
            return "ComputationGraph";
        }

        @Override
        public INDArray[] outputs(Map<String, INDArray> kerasInputs) {
            return graph.output(false, ordered(kerasInputs));
        }

        @Override
        public List<String> layerNames() {
            List<String> names = new ArrayList<>();
            GraphVertex[] vertices = graph.getVertices();
            for (int index : graph.topologicalSortOrder()) {
                if (!vertices[index].isInputVertex()) {
                    names.add(vertices[index].getVertexName());
                }
            }
            return names;
        }

        @Override
        public INDArray activation(String layer, Map<String, INDArray> kerasInputs) {
            return graph.output(List.of(layer), false, ordered(kerasInputs), null)[0].dup();
        }

        /** The arrays in the graph's input order, matched by the Keras input names the importer kept. */
        private INDArray[] ordered(Map<String, INDArray> kerasInputs) {
            List<String> names = graph.getConfiguration().getNetworkInputs();
            INDArray[] arrays = new INDArray[names.size()];
            for (int i = 0; i < arrays.length; i++) {
                arrays[i] = kerasInputs.get(names.get(i));
                if (arrays[i] == null) {
                    throw new IllegalArgumentException("the test vectors hold no input " + names.get(i) + " (they hold "
                            + kerasInputs.keySet() + ")");
                }
            }
            return arrays;
        }
    }
}
