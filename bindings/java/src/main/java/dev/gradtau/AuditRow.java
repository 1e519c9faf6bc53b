package dev.gradtau;

/**
 * One audit: the task's metric on the three sets and the membership attacks (forget set =
 * members, test set = non-members; ≈ 0.5 means the forget set looks unseen). Accuracies and
 * {@code miaEntropy} are NaN for models without class labels; NaN also marks any score that
 * does not apply or was not measured.
 *
 * @param retainAccuracy accuracy on the retain set
 * @param forgetAccuracy accuracy on the forget set
 * @param testAccuracy accuracy on the test set
 * @param miaLoss the paper's attack accuracy on the per-sample loss ({@code paper.accuracy()})
 * @param miaEntropy the paper's attack accuracy on the softmax entropy
 * @param metric the task's primary metric (accuracy, MSE or macro F1, following the loss)
 * @param secondary the task's second metric (MAE for regression), or null
 * @param paper the paper's attack: logistic regression on the raw loss
 * @param logLoss the same protocol on {@code ln(loss + ε)}
 * @param threshold one loss threshold, lower loss ⇒ member
 * @param strongest the largest distance from chance among the attacks (0: looks unseen)
 * @param attackSamples samples per side the attacks ran on (0: too few, every attack NaN)
 */
public record AuditRow(double retainAccuracy, double forgetAccuracy, double testAccuracy,
        double miaLoss, double miaEntropy, MetricScores metric, MetricScores secondary,
        AttackScores paper, AttackScores logLoss, AttackScores threshold, double strongest,
        long attackSamples) {

    /**
     * One metric on the three sets.
     *
     * @param metric which metric
     * @param retain its value on the retain set
     * @param forget its value on the forget set
     * @param test its value on the test set
     */
    public record MetricScores(Metric metric, double retain, double forget, double test) {
        /** The metric's short name ({@code "accuracy"}, {@code "mse"}, {@code "mae"}, {@code "macro_f1"}). */
        public String name() {
            return Native.metricName(metric.code);
        }
    }

    /**
     * What one attack achieves.
     *
     * @param accuracy balanced accuracy (0.5: chance)
     * @param auc ROC AUC (0.5: chance)
     * @param tprAt1PctFpr true-positive rate at 1 % false positives (NaN with fewer than 100
     *     test samples)
     */
    public record AttackScores(double accuracy, double auc, double tprAt1PctFpr) {}

    /** The primary metric's short name, e.g. {@code "mse"}. */
    public String metricName() {
        return metric.name();
    }

    /**
     * Builds a row from the JNI glue's flat array (see {@code Java_dev_gradtau_Native_auditReport}
     * for the layout).
     */
    static AuditRow fromNative(double[] v) {
        MetricScores primary = new MetricScores(Metric.fromCode((long) v[0]), v[1], v[2], v[3]);
        MetricScores second = v[4] < 0 ? null
                : new MetricScores(Metric.fromCode((long) v[4]), v[5], v[6], v[7]);
        return new AuditRow(v[8], v[9], v[10], v[12], v[11], primary, second,
                new AttackScores(v[12], v[13], v[14]), new AttackScores(v[15], v[16], v[17]),
                new AttackScores(v[18], v[19], v[20]), v[21], (long) v[22]);
    }
}
