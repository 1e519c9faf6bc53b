package dev.gradtau;

import java.util.Arrays;

/**
 * One parameter (or buffer, such as a batchnorm running mean) of a model.
 *
 * @param name {@code <node>.<param>}, as in PyTorch's {@code state_dict}
 * @param shape row-major shape (PyTorch's layout)
 * @param numel number of floats the bound buffer must hold
 * @param trainable false for buffers that are not trained; they must be bound all the same
 */
public record ParamInfo(String name, long[] shape, long numel, boolean trainable) {
    public ParamInfo {
        shape = shape.clone();
    }

    @Override
    public long[] shape() {
        return shape.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof ParamInfo p && p.name.equals(name) && Arrays.equals(p.shape, shape)
                && p.numel == numel && p.trainable == trainable;
    }

    @Override
    public int hashCode() {
        return name.hashCode() * 31 + Arrays.hashCode(shape);
    }

    @Override
    public String toString() {
        return "ParamInfo[" + name + " " + Arrays.toString(shape) + (trainable ? "" : " buffer") + "]";
    }
}
