package dev.gradtau;

/**
 * The host's side of publishing new weights into a model's bound buffers, for a host whose
 * own engine (its own code, a JVM array view, another library) reads those buffers; set it
 * with {@link Model#setPublishHook(PublishHook)}.
 *
 * <p>gradtau calls it on the thread that made the writing call ({@link Model#train},
 * {@link Model#unlearn}, {@link Model#initWeights}), first with {@link PublishPhase#BEGIN}
 * before it writes the buffers, then, only if that returned {@code true}, with
 * {@link PublishPhase#END} once the buffers hold the new weights. Take your engine's write
 * lock at BEGIN and release it at END: a reader that holds the engine's read lock then sees
 * the old weights or the new ones, never a mix.
 *
 * <p>The hook runs outside gradtau's own lock, so it may call the model's read methods
 * ({@link Model#infer}, {@link Model#predict}, ...); a writing call on the same model from it
 * throws {@link Status#BUSY}. Returning {@code false} at BEGIN keeps the old weights, and the
 * writing call throws {@link GradtauException} with {@link Status#CANCELLED}. An exception
 * thrown at BEGIN counts as {@code false}: the call throws CANCELLED with that exception as
 * its cause. An exception thrown at END is discarded: the new weights are already in place.
 */
@FunctionalInterface
public interface PublishHook {
    /**
     * Called around a publish of new weights.
     *
     * @return at {@link PublishPhase#BEGIN}, {@code true} to publish, {@code false} to keep the
     *     old weights; ignored at {@link PublishPhase#END}
     */
    boolean onPublish(PublishPhase phase);
}
