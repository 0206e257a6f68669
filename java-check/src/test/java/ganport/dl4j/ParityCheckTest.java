package ganport.dl4j;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.awt.image.BufferedImage;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import javax.imageio.ImageIO;

import org.deeplearning4j.nn.modelimport.keras.Hdf5Archive;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Runs the check on models that ganport trained and exported earlier in this same Maven build. */
class ParityCheckTest {

    private static File fixtures;
    /**
     * The tolerance these tests give: above the ones ganport's parity rule gives these small models (atol 1e-5 plus
     * their summation spread, under 1e-4), far below what a weight moved by 1e-2 does.
     */
    private static final double TOLERANCE = 1e-4;

    @BeforeAll
    static void locateFixtures() {
        String folder = System.getProperty("ganport.fixtures");
        assertTrue(folder != null && new File(folder, "complete").isFile(),
                "ganport fixtures missing: the exec plugin runs src/test/python/make_fixtures.py before the tests");
        fixtures = new File(folder);
    }

    private static ParityCheck.ModelResult only(ParityCheck.Report report, String model) {
        return report.models.stream().filter(r -> r.model.equals(model)).findFirst().orElseThrow();
    }

    @Test
    void generatorAndDiscriminatorImportAndMatchKeras(@TempDir Path temp) throws Exception {
        ParityCheck.Report report = ParityCheck.check(new File(fixtures, "exported"), TOLERANCE);
        for (String model : new String[] {"generator", "discriminator"}) {
            ParityCheck.ModelResult result = only(report, model);
            System.out.println(ParityCheck.summary(result));
            assertEquals("compared", result.status, result.reason);
            assertEquals(Boolean.TRUE, result.withinTolerance, result.reason);
            assertTrue(result.maxAbsDiff <= TOLERANCE * result.outputScale, "max abs diff " + result.maxAbsDiff);
            assertTrue(result.maxLayerScaledDiff <= TOLERANCE, "per-layer " + result.maxLayerScaledDiff);
            assertFalse(result.layers.isEmpty(), "per-layer activations were compared");
        }
        // DL4J drops the generator's trailing Reshape: the comparison must say how it reconciled the shapes.
        ParityCheck.ModelResult generator = only(report, "generator");
        assertEquals(784L, generator.dl4jOutputShape[1]);
        assertTrue(generator.shapeReconciliation.startsWith("flattened"));
        assertTrue(report.passed);

        File json = temp.resolve("report.json").toFile();
        ParityCheck.write(report, json);
        assertTrue(Files.readString(json.toPath()).contains("\"status\" : \"compared\""));
    }

    /** Without a tolerance the report holds numbers only: ganport verify judges them (ganport/parity.py). */
    @Test
    void withoutAToleranceTheReportHoldsNumbersAndNoVerdict() throws Exception {
        ParityCheck.Report report = ParityCheck.check(new File(fixtures, "perturbed"), null);
        ParityCheck.ModelResult result = only(report, "generator");
        assertEquals("compared", result.status);
        assertEquals(null, result.withinTolerance);
        assertEquals(null, report.tolerance);
        assertTrue(result.maxAbsDiff > TOLERANCE, "the moved weight shows in the numbers: " + result.maxAbsDiff);
        assertTrue(report.passed, "every model was compared");
    }

    @Test
    void convolutionalConditionalAndTwoOutputModelsImportAsBothNetworkKinds() throws Exception {
        ParityCheck.Report report = ParityCheck.check(new File(fixtures, "graphs"), TOLERANCE);
        String[][] expected = {
            {"dcgan_generator", "MultiLayerNetwork"},
            {"cgan_generator", "ComputationGraph"},
            {"acgan_discriminator", "ComputationGraph"},
        };
        for (String[] model : expected) {
            ParityCheck.ModelResult result = only(report, model[0]);
            System.out.println(ParityCheck.summary(result));
            assertEquals("compared", result.status, result.reason);
            assertEquals(Boolean.TRUE, result.withinTolerance, ParityCheck.summary(result));
            assertEquals(model[1], result.networkKind);
            assertTrue(result.layers.size() >= 8, "per-layer activations were compared: " + result.layers.size());
        }
        // Images stay NHWC end to end: DL4J's convolutional generator gives Keras's own [N, 28, 28, 1].
        assertArrayEquals(new long[] {16, 28, 28, 1}, only(report, "dcgan_generator").dl4jOutputShape);
        assertTrue(report.passed);
        // Its layers were compared on the first inputs only: their activations are stored for those (a few MB).
        try (Hdf5Archive vectors = new Hdf5Archive(new File(fixtures, "graphs/dcgan_generator_inputs_and_outputs.h5")
                .getPath())) {
            long rows = vectors.readDataSet(vectors.getDataSets("activations").get(0), "activations").size(0);
            assertTrue(rows > 1 && rows < 16, "activations stored for " + rows + " of 16 inputs");
        }
    }

    @Test
    void sampleGridWritesOneRowPerLabelFromTheImportedConditionalGenerator(@TempDir Path temp) throws Exception {
        File png = temp.resolve("grid.png").toFile();
        int[] shape = SampleGrid.write(new File(fixtures, "graphs/cgan_generator.h5"), png, 5, 0,
                SampleGrid.parseLabels("0-2,7"));
        assertArrayEquals(new int[] {4, 5, 28, 28}, shape);
        BufferedImage image = ImageIO.read(png);
        assertEquals(5 * 28, image.getWidth());
        assertEquals(4 * 28, image.getHeight());
        assertThrows(IllegalArgumentException.class, () -> SampleGrid.write(
                new File(fixtures, "graphs/dcgan_generator.h5"), temp.resolve("x.png").toFile(), 4, 0, List.of(7)));
    }

    /**
     * model_config longer than the 2048 bytes DL4J's Hdf5Archive first reads it into, stored both ways Keras wrote it
     * (variable-length by h5py 3 and tf_keras, fixed-length by Keras 2.0-2.2): read whole, and imported the same.
     */
    @Test
    void modelConfigIsReadWholeInBothStringKindsAndImportsTheSame() throws Exception {
        var variableLength = ImportedModel.rootStrings(new File(fixtures, "exported/generator.h5"), "model_config",
                "no_such_attribute");
        String modelConfig = variableLength.get("model_config");
        assertTrue(modelConfig.length() > 2048, "model_config of " + modelConfig.length() + " characters");
        assertTrue(modelConfig.endsWith("}"), "read whole");
        assertEquals(modelConfig, ImportedModel.rootStrings(new File(fixtures, "fixed-length/generator.h5"),
                "model_config").get("model_config"));
        assertFalse(variableLength.containsKey("no_such_attribute"));
        File fixedLength = new File(fixtures, "fixed-length/generator.h5");
        IOException notText = assertThrows(IOException.class, () -> ImportedModel.rootStrings(fixedLength,
                "not_a_string"));
        assertTrue(notText.getMessage().endsWith("attribute not_a_string is not a single string"),
                notText.getMessage());
        ParityCheck.ModelResult result = only(ParityCheck.check(new File(fixtures, "fixed-length"), TOLERANCE),
                "generator");
        assertEquals("compared", result.status, result.reason);
        assertEquals(Boolean.TRUE, result.withinTolerance, result.reason);
        assertEquals(only(ParityCheck.check(new File(fixtures, "exported"), TOLERANCE), "generator").maxAbsDiff,
                result.maxAbsDiff);
    }

    /** A kernel weight of the MLP generator (MultiLayerNetwork), an embedding weight of the CGAN (ComputationGraph). */
    @ParameterizedTest
    @CsvSource({"perturbed, generator", "graphs-perturbed, cgan_generator"})
    void oneMovedWeightFailsTheCheck(String folder, String model) throws Exception {
        ParityCheck.Report report = ParityCheck.check(new File(fixtures, folder), TOLERANCE);
        ParityCheck.ModelResult result = only(report, model);
        System.out.println(ParityCheck.summary(result));
        assertEquals(Boolean.FALSE, result.withinTolerance);
        assertTrue(result.maxAbsDiff > TOLERANCE * result.outputScale);
        assertFalse(report.passed);
    }

    @Test
    void onnxRuntimeForJavaMatchesKerasOnExportsTheZooAndEveryShippedModel() throws Exception {
        File shipped = new File(System.getProperty("ganport.models"));
        List<File> folders = new java.util.ArrayList<>(List.of(new File(fixtures, "exported"), new File(fixtures,
                "graphs")));
        for (String name : new String[] {"mnist-gan", "mnist-gan-ema", "mnist-cgan", "mnist-dcgan"}) {
            folders.add(new File(shipped, name));
        }
        int checked = 0;
        for (File folder : folders) {
            ParityCheck.Report report = ParityCheck.check(folder, TOLERANCE, GanModel.Runtime.ONNX);
            for (ParityCheck.ModelResult result : report.models) {
                System.out.println(folder.getName() + ": " + ParityCheck.summary(result));
                assertEquals("compared", result.status, result.reason);
                assertEquals("OrtSession", result.networkKind);
                assertEquals(Boolean.TRUE, result.withinTolerance, ParityCheck.summary(result));
                checked++;
            }
        }
        // exported: the generator; graphs: three zoo models; each shipped folder: its generator.
        assertEquals(1 + 3 + 4, checked);
    }

    @Test
    void oneMovedWeightFailsOnnxRuntimeForJavaToo() throws Exception {
        ParityCheck.Report report = ParityCheck.check(new File(fixtures, "perturbed-onnx"), TOLERANCE,
                GanModel.Runtime.ONNX);
        ParityCheck.ModelResult result = only(report, "generator");
        System.out.println(ParityCheck.summary(result));
        assertEquals(Boolean.FALSE, result.withinTolerance);
        assertTrue(result.maxAbsDiff > TOLERANCE * result.outputScale);
    }

    /** The same seed gives the same noise on both routes, so the same digits: pixels differ by rounding at most. */
    @ParameterizedTest
    @CsvSource({"exported/generator, ''", "graphs/cgan_generator, 0-9"})
    void sampleGridDrawsTheSameDigitsThroughDl4jAndOnnxRuntime(String model, String labels, @TempDir Path temp)
            throws Exception {
        List<Integer> rows = labels.isEmpty() ? null : SampleGrid.parseLabels(labels);
        File dl4j = temp.resolve("dl4j.png").toFile();
        File onnx = temp.resolve("onnx.png").toFile();
        SampleGrid.write(new File(fixtures, model + ".h5"), dl4j, 6, 3, rows);
        SampleGrid.write(new File(fixtures, model + ".onnx"), onnx, 6, 3, rows);
        BufferedImage first = ImageIO.read(dl4j);
        BufferedImage second = ImageIO.read(onnx);
        assertEquals(first.getWidth(), second.getWidth());
        assertEquals(first.getHeight(), second.getHeight());
        int largest = 0;
        long inked = 0;
        for (int y = 0; y < first.getHeight(); y++) {
            for (int x = 0; x < first.getWidth(); x++) {
                int a = first.getRaster().getSample(x, y, 0);
                largest = Math.max(largest, Math.abs(a - second.getRaster().getSample(x, y, 0)));
                inked += a > 127 ? 1 : 0;
            }
        }
        assertTrue(largest <= 1, "pixels differ by " + largest + " gray levels");
        assertTrue(inked > 0, "the grid is not blank");
    }

    @Test
    void keras3NativeFileIsReportedNotImportableWithDl4jsReason() throws Exception {
        ParityCheck.Report report = ParityCheck.check(new File(fixtures, "keras3"), TOLERANCE);
        ParityCheck.ModelResult result = only(report, "generator");
        System.out.println(ParityCheck.summary(result));
        assertEquals("not-importable", result.status);
        assertTrue(result.reason.startsWith("not DL4J-importable"), result.reason);
        assertTrue(result.reason.contains("Keras major version"), result.reason);
        assertFalse(report.passed);
    }
}
