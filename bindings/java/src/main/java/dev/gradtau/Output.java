package dev.gradtau;

/**
 * What {@link Model#infer(float[], int, Output)} returns ({@code GRADTAU_OUTPUT_*}). The JNI
 * glue maps each constant to the C value by its position, so the order here is the order of
 * its table.
 */
public enum Output {
    /** The model's raw outputs: logits for a classifier, values for a regressor. */
    RAW,
    /**
     * Probabilities: softmax over the last dimension for a {@code cross_entropy} model, a
     * sigmoid per value for {@code bce_with_logits}; {@link Status#INVALID_ARGUMENT} for an
     * {@code mse} model.
     */
    PROBABILITIES
}
