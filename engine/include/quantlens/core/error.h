#pragma once

#include <stdexcept>
#include <string>

namespace quantlens {

// The one error type of the engine: which file (or other source) is at fault, and a sentence a
// person can act on. what() reads "<source>: <message>".
class Error : public std::runtime_error {
public:
    Error(std::string source, std::string message)
        : std::runtime_error(source.empty() ? message : source + ": " + message),
          source_(std::move(source)), message_(std::move(message)) {}

    const std::string& source() const { return source_; }
    const std::string& message() const { return message_; }

private:
    std::string source_;
    std::string message_;
};

// A compute device that failed while working (out of its memory, a driver or kernel error): the
// job cannot finish there, though it could on another device. Applications tell it apart to offer
// the CPU instead.
class DeviceFailure : public Error {
public:
    using Error::Error;
};

// Thrown when a job's cancel token is set; callers tell it apart from failures.
class Cancelled : public Error {
public:
    Cancelled() : Error("", "cancelled") {}
};

} // namespace quantlens
