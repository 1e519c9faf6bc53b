package dev.gradtau;

/** The variants of ∇τ ({@code GRADTAU_NABLA_TAU_MODE_*}). */
public enum NablaTauMode {
    /** Distribution-matching target, non-decaying α, audit-based switch-off (the default). */
    ADAPTIVE(0),
    /** The authors' recipe, faithfully. */
    PAPER(1);

    final int code;

    NablaTauMode(int code) {
        this.code = code;
    }

    static NablaTauMode fromCode(long code) {
        for (NablaTauMode m : values()) {
            if (m.code == code) {
                return m;
            }
        }
        throw new IllegalStateException("the library reported an unknown ∇τ mode " + code);
    }
}
