package dev.gradtau;

/**
 * One audit: accuracies on the three sets and the membership-inference attack's accuracy
 * (≈ 0.5 means the forget set looks unseen). Accuracies and {@code miaEntropy} are NaN for
 * models without class labels.
 *
 * @param retainAccuracy accuracy on the retain set
 * @param forgetAccuracy accuracy on the forget set
 * @param testAccuracy accuracy on the test set
 * @param miaLoss attack accuracy on the per-sample loss
 * @param miaEntropy attack accuracy on the softmax entropy
 */
public record AuditRow(double retainAccuracy, double forgetAccuracy, double testAccuracy,
        double miaLoss, double miaEntropy) {}
