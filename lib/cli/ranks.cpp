#include "cli/ranks.hpp"

#include <cstdlib>

namespace xntk::cli {

#ifdef XNTK_HAVE_MPI
/// The MPI job's ranks (mpi.cpp).
Ranks& mpi_ranks();
#endif

std::unique_ptr<detail::BlockFile> Ranks::open(const std::string& path, const std::string& target, bool truncate) {
  return std::make_unique<detail::PartialFile>(path, target, truncate);
}

bool mpi_compiled() {
#ifdef XNTK_HAVE_MPI
  return true;
#else
  return false;
#endif
}

namespace {

/// Whether an MPI launcher started this process: Open MPI's mpirun, PMIx or PMI (MPICH's, srun's).
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(v)) return true;
  return false;
}

}  // namespace

Ranks& ranks() {
#ifdef XNTK_HAVE_MPI
  if (launched_by_mpi()) return mpi_ranks();
#else
  (void)launched_by_mpi;
#endif
  static Ranks alone;
  return alone;
}

}  // namespace xntk::cli
