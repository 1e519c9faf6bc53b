package dev.gradtau;

/**
 * Called after every optimisation step of {@link Model#unlearn} / {@link Model#train}, on the
 * thread that made the call. Return {@code false} to cancel: the call then throws a
 * {@link GradtauException} with {@link Status#CANCELLED} and the bound buffers stay
 * bit-for-bit as they were (unless {@code keepPartial}). An exception thrown here cancels the
 * run the same way and is rethrown, as is, from the call. Writing calls on the same model from
 * inside the callback fail with {@link Status#BUSY}; reads run (on the weights from before the
 * run).
 */
@FunctionalInterface
public interface Progress {
    /** Returns {@code true} to continue, {@code false} to cancel. */
    boolean onStep(Step step);

    /**
     * What the library reports after one step.
     *
     * @param method {@code "nabla_tau"}, {@code "finetune"}, {@code "neggrad"},
     *     {@code "neggrad_plus"} or {@code "train"}
     * @param epoch 0-based epoch
     * @param epochs planned number of epochs
     * @param step 0-based step
     * @param totalSteps planned number of steps
     * @param forgetLoss mean forget-batch loss (NaN where the method uses none, and in ∇τ's
     *     repair phase once the forget term is off)
     * @param retainLoss mean retain (or training) batch loss (NaN where the method uses none)
     * @param alpha the forget weight α
     * @param tau the target loss τ (NaN outside ∇τ)
     * @param lr the learning rate of this step
     */
    record Step(String method, long epoch, long epochs, long step, long totalSteps,
            float forgetLoss, float retainLoss, float alpha, float tau, float lr) {}
}
