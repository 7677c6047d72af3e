// A stand-in for the innovaphone SDK's common/os/iomux.h (see platform/platform.h): UIoContext
// and the IIoMux fd methods with the SDK's signatures. No include guard, like the SDK's.
class UIoContext {
protected:
    IoMuxFd FDIIoMux;

public:
    bool isError, isHangup, isOpened;
    UIoContext() : FDIIoMux(-1), isError(false), isHangup(false), isOpened(false) {}
    virtual ~UIoContext() {}
    IoMuxFd GetFd() { return FDIIoMux; }
    void SetFd(IoMuxFd fd) { FDIIoMux = fd; }
    virtual void IoContextNotify(bool indRX, bool indTX) = 0;
};

class IIoMux {
public:
    virtual ~IIoMux() {}
    virtual void Run() = 0;
    virtual void FDAdd(IoMuxFd fd, UIoContext* context, bool pollOut) = 0;
    virtual void FDClose(UIoContext* context) = 0;
    virtual void FDRem(UIoContext* context) = 0;
};
