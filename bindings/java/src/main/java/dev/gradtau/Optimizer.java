package dev.gradtau;

/** The optimizers of {@link Model#train} ({@code GRADTAU_OPTIMIZER_*}). */
public enum Optimizer {
    /** SGD, with momentum and Nesterov from the options. */
    SGD(0),
    /** Adam (L2 weight decay added to the gradient). */
    ADAM(1),
    /** AdamW (decoupled weight decay; the default). */
    ADAMW(2);

    final int code;

    Optimizer(int code) {
        this.code = code;
    }

    static Optimizer fromCode(long code) {
        for (Optimizer o : values()) {
            if (o.code == code) {
                return o;
            }
        }
        throw new IllegalStateException("the library reported an unknown optimizer " + code);
    }
}
