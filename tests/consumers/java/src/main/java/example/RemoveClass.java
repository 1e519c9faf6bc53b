package example;

import dev.gradtau.AuditRow;
import dev.gradtau.Dataset;
import dev.gradtau.Digits;
import dev.gradtau.Gradtau;
import dev.gradtau.Method;
import dev.gradtau.Model;
import dev.gradtau.ParamInfo;
import dev.gradtau.Report;
import dev.gradtau.TrainOptions;
import dev.gradtau.UnlearnOptions;
import java.util.stream.IntStream;

/** Trains a digits MLP on weights this program owns, then removes class 3 with ∇τ. */
public final class RemoveClass {
    /** The audits before and after unlearning, and the unlearning report. */
    public record Outcome(AuditRow before, AuditRow after, Report report) {}

    private RemoveClass() {}

    public static Outcome run() {
        try (Model model = Model.fromJson(Digits.mlpSpec()); Digits.Split data = Digits.split(3)) {
            for (ParamInfo p : model.params()) {
                model.bindNew(p.name());
            }
            model.initWeights(1);
            int[] labels = data.train().labels();
            int[] forgetIdx = IntStream.range(0, labels.length).filter(i -> labels[i] == 3).toArray();
            int[] retainIdx = IntStream.range(0, labels.length).filter(i -> labels[i] != 3).toArray();
            try (Dataset forget = data.train().subset(forgetIdx);
                    Dataset retain = data.train().subset(retainIdx)) {
                model.train(data.train(), TrainOptions.builder().epochs(25).seed(1).build());
                AuditRow before = model.audit(retain, forget, data.test(), 0);
                Report report = model.unlearn(forget, retain, data.val(),
                        UnlearnOptions.builder(Method.NABLA_TAU).seed(3).build());
                AuditRow after = model.audit(retain, forget, data.test(), 0);
                return new Outcome(before, after, report);
            }
        }
    }

    public static String describe(Outcome o) {
        return String.format("gradtau %s (Java): %s, %d steps; forget accuracy %.3f -> %.3f,"
                + " retain %.3f -> %.3f, MIA (loss) %.3f", Gradtau.version(), o.report().method(),
                o.report().steps(), o.before().forgetAccuracy(), o.after().forgetAccuracy(),
                o.before().retainAccuracy(), o.after().retainAccuracy(), o.after().miaLoss());
    }

    public static void main(String[] args) {
        System.out.println(describe(run()));
    }
}
