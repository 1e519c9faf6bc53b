package dev.gradtau;

import java.util.OptionalLong;

/**
 * What a completed run did. A plain value: the bindings copy the native report out and free
 * it at once, so there is nothing to close.
 */
public final class Report {
    private final String method;
    private final long epochs;
    private final long steps;
    private final double seconds;
    private final float lr;
    private final float finalAlpha;
    private final float finalTau;
    private final long forgetStoppedAt;
    private final boolean truncated;
    private final StopReason stopReason;

    /** Built by the JNI glue. */
    Report(String method, long epochs, long steps, double seconds, float lr, float finalAlpha,
            float finalTau, long forgetStoppedAt, boolean truncated, int stopReason) {
        this.method = method;
        this.epochs = epochs;
        this.steps = steps;
        this.seconds = seconds;
        this.lr = lr;
        this.finalAlpha = finalAlpha;
        this.finalTau = finalTau;
        this.forgetStoppedAt = forgetStoppedAt;
        this.truncated = truncated;
        this.stopReason = StopReason.fromCode(stopReason);
    }

    /** The method that ran: {@code "nabla_tau"}, ..., {@code "train"}. */
    public String method() {
        return method;
    }

    /** Planned epochs (forget-epochs for ∇τ). */
    public long epochs() {
        return epochs;
    }

    /** Optimisation steps taken. */
    public long steps() {
        return steps;
    }

    /** Wall-clock seconds of the run. */
    public double seconds() {
        return seconds;
    }

    /**
     * The learning rate at the first step (∇τ's default depends on the mode and the forget
     * fraction).
     */
    public float lr() {
        return lr;
    }

    /** ∇τ: the last α (NaN for other methods). */
    public float finalAlpha() {
        return finalAlpha;
    }

    /** ∇τ: the last target loss τ (NaN for other methods). */
    public float finalTau() {
        return finalTau;
    }

    /** ∇τ adaptive mode: the forget-epoch at which the forget term switched off, if it did. */
    public OptionalLong forgetStoppedAt() {
        return forgetStoppedAt < 0 ? OptionalLong.empty() : OptionalLong.of(forgetStoppedAt);
    }

    /**
     * True when the run was cut short by {@code maxSteps} ({@link #stopReason()} is
     * {@link StopReason#MAX_STEPS}).
     */
    public boolean truncated() {
        return truncated;
    }

    /** Why the run ended. */
    public StopReason stopReason() {
        return stopReason;
    }

    @Override
    public String toString() {
        return "Report[method=" + method + ", epochs=" + epochs + ", steps=" + steps
                + ", seconds=" + seconds + ", lr=" + lr + ", finalAlpha=" + finalAlpha
                + ", finalTau=" + finalTau + ", forgetStoppedAt=" + forgetStoppedAt
                + ", truncated=" + truncated + ", stopReason=" + stopReason + "]";
    }
}
