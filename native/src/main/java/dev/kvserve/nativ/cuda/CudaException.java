package dev.kvserve.nativ.cuda;

/** A CUDA driver call returned an error; carries the driver's name and description of it. */
public final class CudaException extends RuntimeException {

    private final int code;
    private final String errorName;

    public CudaException(String call, int code, String errorName, String description) {
        super(call + " failed: " + errorName + " (" + code + "): " + description);
        this.code = code;
        this.errorName = errorName;
    }

    public CudaException(String message) {
        super(message);
        this.code = -1;
        this.errorName = "";
    }

    /** The CUresult, or -1 when the error did not come from the driver. */
    public int code() {
        return code;
    }

    /** The CUresult's enum name (e.g. CUDA_ERROR_OUT_OF_MEMORY), empty when not from the driver. */
    public String errorName() {
        return errorName;
    }
}
