package dev.gradtau;

/** The unlearning methods ({@code GRADTAU_METHOD_*}). */
public enum Method {
    /** ∇τ (the default). */
    NABLA_TAU(0),
    /** Fine-tuning on the retain set. */
    FINETUNE(1),
    /** Gradient ascent on the forget set. */
    NEGGRAD(2),
    /** Weighted ascent on the forget set plus descent on the retain set. */
    NEGGRAD_PLUS(3);

    final int code;

    Method(int code) {
        this.code = code;
    }

    static Method fromCode(long code) {
        for (Method m : values()) {
            if (m.code == code) {
                return m;
            }
        }
        throw new IllegalStateException("the library reported an unknown method " + code);
    }
}
