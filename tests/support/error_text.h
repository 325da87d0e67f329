#pragma once

#include "quantlens/core/error.h"

#include <QString>

namespace quantlens::test {

// The what() of the quantlens::Error that `action` throws, or "no error".
template <typename Action> QString errorOf(Action&& action) {
    try {
        action();
    } catch (const Error& e) {
        return QString::fromStdString(e.what());
    }
    return "no error";
}

} // namespace quantlens::test
