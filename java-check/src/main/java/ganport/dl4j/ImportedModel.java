package ganport.dl4j;

import java.io.File;
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
import org.deeplearning4j.nn.modelimport.keras.Hdf5Archive;
import org.deeplearning4j.nn.modelimport.keras.KerasModelImport;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.shade.jackson.databind.ObjectMapper;

/**
 * A Keras HDF5 model imported the way its config asks: a Sequential with {@code importKerasSequentialModelAndWeights}
 * (a MultiLayerNetwork), a functional Model with {@code importKerasModelAndWeights} (a ComputationGraph). Inputs are
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
        Map<String, Object> config;
        try (Hdf5Archive archive = new Hdf5Archive(modelFile.getPath())) {
            config = new ObjectMapper().readValue(archive.readAttributeAsJson("model_config"), Map.class);
        }
        ImportedModel model;
        if ("Sequential".equals(config.get("class_name"))) {
            MultiLayerNetwork network = KerasModelImport.importKerasSequentialModelAndWeights(modelFile.getPath(), false);
            network.getLayerWiseConfigurations().setInferenceWorkspaceMode(workspaces);
            network.getLayerWiseConfigurations().setTrainingWorkspaceMode(workspaces);
            model = new Sequential(network);
        } else {
            ComputationGraph graph = KerasModelImport.importKerasModelAndWeights(modelFile.getPath(), false);
            graph.getConfiguration().setInferenceWorkspaceMode(workspaces);
            graph.getConfiguration().setTrainingWorkspaceMode(workspaces);
            model = new Graph(graph);
        }
        model.kerasConfig = config;
        return model;
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
