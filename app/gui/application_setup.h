#pragma once

// Gives the application its window icon (from resources/quantlens.qrc, which lives in the static
// studio library and so must be initialised by name). Call after constructing the QApplication.
void installApplicationIcon();
