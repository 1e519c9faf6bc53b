package example;

import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class RemoveClassTest {
    @Test
    void classThreeIsForgottenAndTheRestKept() {
        RemoveClass.Outcome o = RemoveClass.run();
        System.out.println(RemoveClass.describe(o));
        assertTrue(o.before().forgetAccuracy() > 0.95 && o.before().retainAccuracy() > 0.95,
                "original model too weak: " + o.before());
        assertTrue(o.after().forgetAccuracy() < 0.2 && o.after().retainAccuracy() > 0.9,
                "class not removed or the rest damaged: " + o.after());
        assertTrue(o.report().steps() > 0, o.report().toString());
    }
}
